package dev.cmoe.deploy.bench;

import com.google.gson.JsonObject;
import dev.cmoe.model.arch.TensorNames;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import java.nio.FloatBuffer;
import java.util.SplittableRandom;

/**
 * Random weights of any LLaMA shape, made in memory as they are read, for benchmarks at sizes
 * no checkpoint here has (LLaMA-2-7B's d = 4096, d_h = 11008). Speed does not depend on the
 * values, only on the shapes, so uniform noise of the usual 1/√fan-in scale stands in for
 * trained weights; norms are ones and the router's bias b and scale u are zeros (CMoE's u = 0).
 */
public final class SyntheticModel implements TensorSource {
    private final long seed;

    public SyntheticModel(long seed) {
        this.seed = seed;
    }

    /**
     * A llama config.json of the given shape. The vocabulary is kept small on purpose: with only
     * one or two layers a 32,000-token LM head would weigh as much as a layer, while in the
     * 32-layer model it is a few percent of the weights.
     */
    public static ModelConfig config(int hidden, int intermediate, int layers, int heads, int kvHeads, int vocab,
                                     int context) {
        JsonObject o = SyntheticShapes.llama(hidden, intermediate, layers, heads, kvHeads, vocab, context);
        o.addProperty("bos_token_id", 1);
        o.addProperty("eos_token_id", 2);
        return ModelConfig.parse(o.toString(), "synthetic " + hidden + "x" + intermediate + " config");
    }

    /**
     * The carving of a d_h-neuron FFN into {@code experts} groups, {@code shared} of them always
     * on and {@code active} routed per token: (shared + active) / experts of the FFN runs.
     */
    public static MoeConfig moe(int intermediate, int experts, int shared, int active) {
        if (intermediate % experts != 0) {
            throw new IllegalArgumentException("intermediate size " + intermediate + " is not a multiple of "
                    + experts + " experts");
        }
        return new MoeConfig(experts, shared, active, intermediate / experts, MoeConfig.ANALYTICAL, "synthetic", null);
    }

    @Override
    public FloatBuffer read(String name, long... shape) {
        long n = 1;
        for (long s : shape) {
            n *= s;
        }
        float[] v = new float[Math.toIntExact(n)];
        if (TensorNames.isNorm(name)) {
            java.util.Arrays.fill(v, 1f);
        } else if (!name.endsWith(".router.bias") && !name.endsWith(".router.scale")) {
            double scale = Math.sqrt(3.0 / shape[shape.length - 1]); // uniform with variance 1/fan-in
            SplittableRandom r = new SplittableRandom(seed ^ name.hashCode());
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) ((2 * r.nextDouble() - 1) * scale);
            }
        }
        return FloatBuffer.wrap(v);
    }
}
