package dev.cmoe.model.moe;

import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.safetensors.SafetensorsException;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.ReferenceLlama;
import dev.cmoe.model.testing.SplitCheckpoint;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** ModelDir opens a carved checkpoint as a Mixture-of-Experts model. */
class MoeModelDirTest {
    @TempDir
    Path tmp;

    @Test
    void everyExpertActiveLoadsAsTheDenseModel() throws Exception {
        RandomModel dense = RandomModel.of(TinyCheckpoint.llama(), 21); // intermediate 96 = 8 × 12
        double[][] expected = new ReferenceLlama(dense).logits(new int[] {0, 17, 250, 3, 99});
        MoeConfig moe = new MoeConfig(8, 2, 6, 12, MoeConfig.ANALYTICAL, "test", null);
        Path dir = SplitCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 21), moe, tmp.resolve("split"));
        int[] tokens = {0, 17, 250, 3, 99};
        try (ModelDir md = ModelDir.open(dir); NDManager m = NDManager.newBaseManager();
             KvCache cache = md.model().newCache(tokens.length)) {
            assertTrue(md.moe().isPresent());
            assertInstanceOf(MoeFeedForward.class, md.model().feedForward(1));
            float[] got = md.model().forward(List.of(new SequenceChunk(cache, tokens)), LogitsMode.ALL, m)
                    .toFloatArray();
            double maxDiff = 0;
            double maxRef = 0;
            for (int t = 0; t < tokens.length; t++) {
                for (int v = 0; v < expected[t].length; v++) {
                    maxDiff = Math.max(maxDiff, Math.abs(got[t * expected[t].length + v] - expected[t][v]));
                    maxRef = Math.max(maxRef, Math.abs(expected[t][v]));
                }
            }
            assertTrue(maxDiff / maxRef < 1e-5, "relative error " + maxDiff / maxRef);
        }
    }

    @Test
    void aMissingExpertTensorIsNamed() throws Exception {
        MoeConfig moe = new MoeConfig(8, 0, 2, 12, MoeConfig.ANALYTICAL, "test", null);
        Path dir = SplitCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 4), moe, tmp.resolve("broken"));
        // drop one routed expert by claiming one more than the file holds
        String config = Files.readString(dir.resolve("config.json"))
                .replace("\"experts\":8", "\"experts\":9").replace("\"intermediate_size\":96", "\"intermediate_size\":108");
        Files.writeString(dir.resolve("config.json"), config);
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> ModelDir.open(dir));
        assertTrue(e.getMessage().contains("model.layers.0.mlp.experts.8.gate_proj.weight"), e.getMessage());
    }
}
