package dev.cmoe.model.testing;

import com.google.gson.JsonObject;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.DType;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Random;

/**
 * A carved checkpoint without carving: every layer's dense FFN is split into consecutive neuron
 * groups (shared first) with a random router, so the model module can test Mixture-of-Experts
 * code on exactly known experts. u and b are zero unless a test sets them.
 */
public final class SplitCheckpoint {
    private SplitCheckpoint() {
    }

    /**
     * Replaces {@code dense}'s FFN tensors by carved ones in place: afterwards {@code dense} is a
     * {@code TensorSource} of the carved model (its config has no {@code cmoe} block; pair it with {@code moe}).
     */
    public static RandomModel split(RandomModel dense, MoeConfig moe) {
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
        return dense;
    }

    /** {@link #split} written as a model directory whose config.json carries the {@code cmoe} block. */
    public static Path write(RandomModel dense, MoeConfig moe, Path dir) throws IOException {
        split(dense, moe);
        TinyCheckpoint.write(dense, dir, DType.F32);
        JsonObject raw = dense.config().rawCopy();
        raw.add(MoeConfig.KEY, moe.toJson());
        Files.writeString(dir.resolve("config.json"), raw.toString(), StandardCharsets.UTF_8);
        return dir;
    }

    private static RandomModel.Tensor rows(float[] w, int from, int n, int d) {
        float[] out = new float[n * d];
        System.arraycopy(w, from * d, out, 0, n * d);
        return new RandomModel.Tensor(new long[] {n, d}, out);
    }

    private static RandomModel.Tensor cols(float[] w, int from, int n, int d, int f) {
        float[] out = new float[d * n];
        for (int i = 0; i < d; i++) {
            System.arraycopy(w, i * f + from, out, i * n, n);
        }
        return new RandomModel.Tensor(new long[] {d, n}, out);
    }

    private static RandomModel.Tensor random(Random r, int rows, int d) {
        float[] v = new float[rows * d];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return new RandomModel.Tensor(new long[] {rows, d}, v);
    }
}
