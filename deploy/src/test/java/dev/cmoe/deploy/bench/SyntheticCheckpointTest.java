package dev.cmoe.deploy.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.google.gson.JsonObject;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.ModelSummary;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.Environment;
import dev.cmoe.model.testing.HfFixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code cmoe synth}'s writer: real layout, shards with an index, dense or carved, loadable by every path. */
class SyntheticCheckpointTest {
    @TempDir
    Path tmp;

    private static JsonObject tinyQwen3() {
        JsonObject c = SyntheticShapes.config("qwen3-8b", 2);
        c.addProperty("hidden_size", 64);
        c.addProperty("intermediate_size", 128);
        c.addProperty("num_attention_heads", 4);
        c.addProperty("num_key_value_heads", 2);
        c.addProperty("head_dim", 32);
        c.addProperty("vocab_size", 4096);
        return c;
    }

    @Test
    void shardedDenseCheckpointLoadsAndRuns() throws Exception {
        Path out = tmp.resolve("dense");
        SyntheticCheckpoint.write(tinyQwen3(), Optional.empty(), new SyntheticModel(1),
                Environment.repoRoot().resolve("models/brown-llama"), out, DType.BF16, 200_000, false);
        assertTrue(Files.isRegularFile(out.resolve(Checkpoint.INDEX_FILE)), "several shards get an index");
        assertFalse(Files.exists(out.resolve(Checkpoint.SINGLE_FILE)));
        ModelSummary s = ModelSummary.of(out);
        assertEquals("BF16", s.storedDtype());
        assertTrue(s.config().qkNorm());
        try (ModelDir md = ModelDir.open(out); NDManager m = NDManager.newBaseManager()) {
            assertEquals(4, HfFixtures.greedy(md.model(), new int[] {0, 5, 9}, 4, m).length);
        }
        assertThrows(IllegalArgumentException.class, () -> SyntheticCheckpoint.write(tinyQwen3(), Optional.empty(),
                new SyntheticModel(1), Environment.repoRoot().resolve("models/brown-llama"), out, DType.BF16,
                200_000, false), "an existing directory is not replaced without force");
    }

    @Test
    void carvedCheckpointIsServedWithoutItsRoutedExperts() {
        Path out = tmp.resolve("carved");
        SyntheticCheckpoint.write(tinyQwen3(), Optional.of(SyntheticModel.moe(128, 8, 2, 2)), new SyntheticModel(2),
                Environment.repoRoot().resolve("models/brown-llama"), out, DType.F32, 1L << 30, false);
        assertTrue(Files.isRegularFile(out.resolve(Checkpoint.SINGLE_FILE)), "one shard when it fits");
        ModelSummary s = ModelSummary.of(out);
        assertTrue(s.moe().isPresent());
        assertTrue(s.activeParameters() < s.parameters());
        try (ModelDir md = ModelDir.open(out, LoadSpec.withoutRoutedExperts())) {
            assertEquals(6, md.moe().orElseThrow().routed());
        }
    }

    @Test
    void unknownShapeNamesTheKnownOnes() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> SyntheticShapes.config("llama-9000", 0));
        assertTrue(e.getMessage().contains("llama-2-7b") && e.getMessage().contains("qwen3-8b"), e.getMessage());
    }
}
