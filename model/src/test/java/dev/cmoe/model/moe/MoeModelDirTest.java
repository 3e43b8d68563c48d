package dev.cmoe.model.moe;

import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import java.util.LinkedHashMap;
import java.util.Map;
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

    /**
     * With budgets of 6 and 2, layer 0 selects every routed expert, as the carve with N_k = 6
     * does, and layer 1 two, as the carve with N_k = 2 does: each layer of the loaded model is
     * exactly that carve's.
     */
    @Test
    void eachLayerSelectsItsOwnBudget() throws Exception {
        MoeConfig all = new MoeConfig(8, 2, 6, 12, MoeConfig.ANALYTICAL, "test", null);
        MoeConfig two = new MoeConfig(8, 2, 2, 12, MoeConfig.ANALYTICAL, "test", null);
        MoeConfig budgets = new MoeConfig(8, 2, 4, 12, MoeConfig.ANALYTICAL, "test", null)
                .withActivePerLayer(new int[] {6, 2});
        Path dirAll = SplitCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 23), all, tmp.resolve("all"));
        Path dirTwo = SplitCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 23), two, tmp.resolve("two"));
        Path dirBudgets = SplitCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 23), budgets,
                tmp.resolve("budgets"));
        java.util.Random r = new java.util.Random(2);
        float[] x = new float[9 * 64];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        try (ModelDir a = ModelDir.open(dirAll); ModelDir t = ModelDir.open(dirTwo); ModelDir b = ModelDir.open(dirBudgets);
             NDManager m = NDManager.newBaseManager()) {
            assertEquals(List.of(6, 2), b.moe().orElseThrow().activePerLayer());
            NDArray in = m.create(x, new Shape(9, 64));
            for (int l = 0; l < 2; l++) {
                MoeFeedForward got = (MoeFeedForward) b.model().feedForward(l);
                MoeFeedForward want = (MoeFeedForward) (l == 0 ? a : t).model().feedForward(l);
                assertEquals(l == 0 ? 6 : 2, got.config().active());
                assertEquals(l == 0 ? 6 : 2, got.route(in).nActive());
                org.junit.jupiter.api.Assertions.assertArrayEquals(want.forward(in).toFloatArray(),
                        got.forward(in).toFloatArray(), "layer " + l);
            }
        }
    }

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

    @Test
    void withoutRoutedExpertsNoRoutedTensorIsReadAndTheLayerRoutesAndSharesAlone() throws Exception {
        MoeConfig moe = new MoeConfig(8, 2, 2, 12, MoeConfig.ANALYTICAL, "test", null);
        Path dir = SplitCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 9), moe, tmp.resolve("head"));
        // a head's view of the checkpoint: every routed expert tensor removed from the file
        Map<String, SafetensorsWriter.Tensor> kept = new LinkedHashMap<>();
        try (Checkpoint c = Checkpoint.open(dir)) {
            for (String name : c.names()) {
                if (!name.contains(".mlp.experts.")) {
                    kept.put(name, new SafetensorsWriter.Tensor(c.info(name).shape(), c.readF32(name)));
                }
            }
        }
        SafetensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), kept, Map.of("format", "pt"), DType.F32);
        assertThrows(SafetensorsException.class, () -> ModelDir.open(dir).close(), "a full load needs the experts");
        try (ModelDir md = ModelDir.open(dir, LoadSpec.withoutRoutedExperts()); NDManager m = NDManager.newBaseManager()) {
            assertEquals(LoadSpec.RoutedExperts.SERVED_BY_ACTORS, md.loadSpec().routed());
            MoeFeedForward layer = (MoeFeedForward) md.model().feedForward(0);
            NDArray x = m.randomNormal(new Shape(3, 64));
            Routing routing = layer.route(x);
            assertEquals(3, routing.tokens());
            assertEquals(new Shape(3, 64), layer.shared(x).getShape());
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> layer.forward(x));
            assertTrue(e.getMessage().contains("served by expert actors"), e.getMessage());
        }
    }
}
