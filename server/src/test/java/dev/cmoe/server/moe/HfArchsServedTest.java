package dev.cmoe.server.moe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.carve.CarveListener;
import dev.cmoe.carve.CarveOptions;
import dev.cmoe.carve.Carver;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.testing.HfFixtures;
import dev.cmoe.server.metrics.ServerMetrics;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every golden architecture carves into a small MoE that keeps the family's features (the
 * carved config keeps its model_type and records the source architecture) and is served through
 * the actor path (expert worker, router per layer, the server's load spec without routed
 * experts) with greedy tokens identical to the in-process carved forward.
 */
@Timeout(300)
class HfArchsServedTest {
    private ActorTestKit kit;

    @TempDir
    Path tmp;

    @BeforeEach
    void start() {
        kit = ActorTestKit.create(); // a system per case: each installs the topology under the same names
    }

    @AfterEach
    void stop() {
        kit.shutdownTestKit();
    }

    static Stream<Path> cases() {
        return HfFixtures.cases().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void carvedAndServedThroughActorsGreedyEqualsInProcess(Path dense) throws Exception {
        Path carved = tmp.resolve("carved");
        // with per-layer budgets: every family carves them, and each served layer selects its own
        Carver.carve(dense, dense.resolve("text.txt"), carved, CarveOptions.of(1, 2, 8).withCalibration(2, 24, 3)
                .withBudgets(CarveOptions.Budgets.ADAPTIVE), CarveListener.NONE);
        JsonObject source = JsonParser.parseString(Files.readString(dense.resolve("config.json"))).getAsJsonObject();
        JsonObject config = JsonParser.parseString(Files.readString(carved.resolve("config.json"))).getAsJsonObject();
        assertEquals(source.get("model_type"), config.get("model_type"));
        assertEquals("adaptive", config.getAsJsonObject("cmoe").get("layer_budgets").getAsString());
        assertEquals(source.getAsJsonArray("architectures").get(0).getAsString(),
                config.getAsJsonObject("cmoe").get("source_architecture").getAsString());
        int[] prefix = HfFixtures.reference(dense).prefixIds();
        try (ModelDir reference = ModelDir.open(carved);
             ModelDir served = ModelDir.open(carved, LoadSpec.withoutRoutedExperts());
             Checkpoint checkpoint = Checkpoint.open(carved);
             NDManager m = NDManager.newBaseManager()) {
            assertEquals(reference.config().qkNorm(), served.config().qkNorm());
            CarvedTopology.install(kit.system(), served.model(), served.moe().orElseThrow(),
                    TensorSource.of(checkpoint), Device.cpu(), new ServerMetrics(new SimpleMeterRegistry()));
            for (int l = 0; l < served.config().numLayers(); l++) {
                assertInstanceOf(ActorMoeFeedForward.class, served.model().feedForward(l));
            }
            int[] want = HfFixtures.greedy(reference.model(), prefix, 16, m);
            assertArrayEquals(want, HfFixtures.greedy(served.model(), prefix, 16, m), dense.getFileName() + ": greedy ids");
        }
    }
}
