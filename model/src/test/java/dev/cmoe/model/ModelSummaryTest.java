package dev.cmoe.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.SafetensorsException;
import dev.cmoe.model.testing.Environment;
import dev.cmoe.model.testing.HfFixtures;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.SplitCheckpoint;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code cmoe info}'s facts come from the config and headers and agree with what the files hold. */
class ModelSummaryTest {
    @TempDir
    Path tmp;

    @Test
    void fixtureCountsMatchTheirReferencesAcrossDtypesAndShards() {
        for (Path dir : HfFixtures.cases()) {
            ModelSummary s = ModelSummary.of(dir);
            long expected = HfFixtures.reference(dir).o().getAsJsonObject("weights").get("num_parameters").getAsLong();
            assertEquals(expected, s.parameters(), dir.getFileName().toString());
            String dtype = dir.getFileName().toString().equals("llama2-f16") ? "F16" : "BF16";
            assertEquals(dtype, s.storedDtype(), dir.getFileName().toString());
            assertEquals(2 * expected, s.bytesByDtype().values().stream().mapToLong(Long::longValue).sum());
            assertEquals(expected, s.activeParameters());
        }
        String qwen3 = ModelSummary.of(HfFixtures.sharedRoot().resolve("qwen3")).render();
        assertTrue(qwen3.contains("Qwen3ForCausalLM") && qwen3.contains("q/k norm") && qwen3.contains("head_dim 32"),
                qwen3);
        String dynamic = ModelSummary.of(HfFixtures.sharedRoot().resolve("llama-dynamic-rope")).render();
        assertTrue(dynamic.contains("context                64 tokens") && dynamic.contains("rope dynamic ×2"), dynamic);
    }

    @Test
    void shippedModelAndACarvedOne() throws Exception {
        ModelSummary shipped = ModelSummary.of(Environment.repoRoot().resolve("models/brown-llama"));
        assertEquals(6_753_536L, shipped.parameters());
        assertEquals("F32", shipped.storedDtype());
        assertEquals(256, shipped.config().contextLength());
        MoeConfig moe = new MoeConfig(8, 2, 2, 12, MoeConfig.ANALYTICAL, "test", null);
        Path carved = SplitCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 3), moe, tmp.resolve("c"));
        ModelSummary s = ModelSummary.of(carved);
        long expert = 3L * 12 * 64; // gate, up, down of one routed expert, per layer
        assertEquals(s.parameters() - 2 * (6 - 2) * expert, s.activeParameters());
        assertTrue(s.render().contains("S2A2E8"), s.render());
        // budgets of 3 and 1 over the two layers: the same routed experts per token in all
        MoeConfig budgets = moe.withActivePerLayer(new int[] {3, 1});
        ModelSummary b = ModelSummary.of(SplitCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 3), budgets,
                tmp.resolve("b")));
        assertEquals(s.activeParameters(), b.activeParameters());
        assertTrue(b.render().matches("(?s).*routed per layer +3, 1 .*"), b.render());
        MoeConfig more = new MoeConfig(8, 2, 3, 12, MoeConfig.ANALYTICAL, "test", null).withActivePerLayer(new int[] {5, 1});
        ModelSummary c = ModelSummary.of(SplitCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 3), more,
                tmp.resolve("m")));
        assertEquals(s.activeParameters() + 2 * expert, c.activeParameters(), "one more expert per token per layer");
    }

    @Test
    void aDenseCheckpointMissingATensorIsNamed() throws Exception {
        Path dir = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 3), tmp.resolve("d"), DType.F32);
        String config = Files.readString(dir.resolve("config.json"));
        Files.writeString(dir.resolve("config.json"), config.replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":3")
                .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"));
        SafetensorsException e = org.junit.jupiter.api.Assertions.assertThrows(SafetensorsException.class,
                () -> ModelSummary.of(dir));
        assertTrue(e.getMessage().contains("model.layers.2."), e.getMessage());
    }
}
