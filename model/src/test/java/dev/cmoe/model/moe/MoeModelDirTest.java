package dev.cmoe.model.moe;

import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.google.gson.JsonObject;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.SafetensorsException;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.ReferenceLlama;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** ModelDir opens a carved checkpoint as a Mixture-of-Experts model. */
class MoeModelDirTest {
    @TempDir
    Path tmp;

    /**
     * Splits the dense FFN of every layer into consecutive neuron groups (shared first) with a
     * random router, u = 0 and b = 0, and writes it with a {@code cmoe} block.
     */
    static Path writeSplit(RandomModel dense, MoeConfig moe, Path dir) throws Exception {
        ModelConfig c = dense.config();
        int d = c.hiddenSize();
        int f = c.intermediateSize();
        int m = moe.expertSize();
        Map<String, RandomModel.Tensor> t = dense.tensors();
        Random r = new Random(3);
        for (int l = 0; l < c.numLayers(); l++) {
            float[] gate = t.remove(MoeWeightNames.dense(l, MoeWeightNames.GATE)).data();
            float[] up = t.remove(MoeWeightNames.dense(l, MoeWeightNames.UP)).data();
            float[] down = t.remove(MoeWeightNames.dense(l, MoeWeightNames.DOWN)).data();
            if (moe.shared() > 0) {
                int s = moe.sharedSize();
                t.put(MoeWeightNames.shared(l, MoeWeightNames.GATE), rows(gate, 0, s, d));
                t.put(MoeWeightNames.shared(l, MoeWeightNames.UP), rows(up, 0, s, d));
                t.put(MoeWeightNames.shared(l, MoeWeightNames.DOWN), cols(down, 0, s, d, f));
            }
            for (int j = 0; j < moe.routed(); j++) {
                int from = moe.sharedSize() + j * m;
                t.put(MoeWeightNames.expert(l, j, MoeWeightNames.GATE), rows(gate, from, m, d));
                t.put(MoeWeightNames.expert(l, j, MoeWeightNames.UP), rows(up, from, m, d));
                t.put(MoeWeightNames.expert(l, j, MoeWeightNames.DOWN), cols(down, from, m, d, f));
            }
            int nr = moe.routed();
            t.put(MoeWeightNames.routerClassifier(l), random(r, nr, d));
            t.put(MoeWeightNames.routerGate(l), random(r, nr, d));
            t.put(MoeWeightNames.routerScale(l), new RandomModel.Tensor(new long[] {nr}, new float[nr]));
            t.put(MoeWeightNames.routerBias(l), new RandomModel.Tensor(new long[] {nr}, new float[nr]));
        }
        TinyCheckpoint.write(dense, dir, DType.F32);
        JsonObject raw = c.rawCopy();
        raw.add(MoeConfig.KEY, moe.toJson());
        Files.writeString(dir.resolve("config.json"), raw.toString(), StandardCharsets.UTF_8);
        return dir;
    }

    static RandomModel.Tensor rows(float[] w, int from, int n, int d) {
        float[] out = new float[n * d];
        System.arraycopy(w, from * d, out, 0, n * d);
        return new RandomModel.Tensor(new long[] {n, d}, out);
    }

    static RandomModel.Tensor cols(float[] w, int from, int n, int d, int f) {
        float[] out = new float[d * n];
        for (int i = 0; i < d; i++) {
            System.arraycopy(w, i * f + from, out, i * n, n);
        }
        return new RandomModel.Tensor(new long[] {d, n}, out);
    }

    static RandomModel.Tensor random(Random r, int rows, int d) {
        float[] v = new float[rows * d];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return new RandomModel.Tensor(new long[] {rows, d}, v);
    }

    @Test
    void everyExpertActiveLoadsAsTheDenseModel() throws Exception {
        RandomModel dense = RandomModel.of(TinyCheckpoint.llama(), 21); // intermediate 96 = 8 × 12
        double[][] expected = new ReferenceLlama(dense).logits(new int[] {0, 17, 250, 3, 99});
        MoeConfig moe = new MoeConfig(8, 2, 6, 12, MoeConfig.ANALYTICAL, "test", null);
        Path dir = writeSplit(RandomModel.of(TinyCheckpoint.llama(), 21), moe, tmp.resolve("split"));
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
        Path dir = writeSplit(RandomModel.of(TinyCheckpoint.llama(), 4), moe, tmp.resolve("broken"));
        // drop one routed expert by claiming one more than the file holds
        String config = Files.readString(dir.resolve("config.json"))
                .replace("\"experts\":8", "\"experts\":9").replace("\"intermediate_size\":96", "\"intermediate_size\":108");
        Files.writeString(dir.resolve("config.json"), config);
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> ModelDir.open(dir));
        assertTrue(e.getMessage().contains("model.layers.0.mlp.experts.8.gate_proj.weight"), e.getMessage());
    }
}
