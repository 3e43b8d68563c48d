package dev.cmoe.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.llama.WeightNames;
import java.nio.FloatBuffer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The LLaMA decoder as trainable parameters for DJL autograd: whole sequences, no KV cache,
 * weights kept in Hugging Face layout and names so a checkpoint is a direct dump of
 * {@link #parameters()} that the inference loader reads back.
 */
public final class TrainableLlama implements AutoCloseable {
    private final ModelConfig config;
    private final NDManager manager;
    private final Map<String, NDArray> params = new LinkedHashMap<>(); // HF name -> weight, HF shape
    private final NDArray ropeCos; // (context, headDim/2)
    private final NDArray ropeSin;

    private TrainableLlama(ModelConfig config, NDManager manager) {
        this.config = config;
        this.manager = manager;
        NDArray[] rope = Ops.ropeTables(manager, config.maxPositionEmbeddings(), config.headDim(), config.ropeTheta());
        ropeCos = rope[0];
        ropeSin = rope[1];
    }

    /**
     * A freshly initialised model: N(0, 0.02) weights, residual output projections scaled by
     * 1/√(2·layers) (GPT-2's rule, which keeps the residual stream's variance flat with depth),
     * unit norms. The numbers come from a Java generator so the same seed gives the same model on
     * every engine and thread count.
     */
    public static TrainableLlama initialise(ModelConfig config, long seed) {
        TrainableLlama m = new TrainableLlama(config, NDManager.newBaseManager());
        SplittableRandom r = new SplittableRandom(seed);
        double std = 0.02;
        double residualStd = std / Math.sqrt(2.0 * config.numLayers());
        for (Map.Entry<String, long[]> e : shapes(config).entrySet()) {
            String name = e.getKey();
            long[] shape = e.getValue();
            float[] v = new float[Math.toIntExact(numel(shape))];
            if (name.endsWith("norm.weight")) {
                java.util.Arrays.fill(v, 1f);
            } else if (!name.endsWith(".bias")) {
                double s = name.endsWith("o_proj.weight") || name.endsWith("down_proj.weight") ? residualStd : std;
                for (int i = 0; i < v.length; i++) {
                    v[i] = (float) (r.nextGaussian() * s);
                }
            }
            m.add(name, Tensors.create(m.manager, FloatBuffer.wrap(v), shape));
        }
        return m;
    }

    /** Loads every parameter of {@code config} from {@code source}, e.g. to resume training. */
    public static TrainableLlama load(ModelConfig config, TensorSource source) {
        TrainableLlama m = new TrainableLlama(config, NDManager.newBaseManager());
        try {
            for (Map.Entry<String, long[]> e : shapes(config).entrySet()) {
                m.add(e.getKey(), Tensors.load(m.manager, source, e.getKey(), e.getValue()));
            }
            return m;
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
    }

    /** Every parameter name of a dense model of {@code config} with its Hugging Face shape, in checkpoint order. */
    public static Map<String, long[]> shapes(ModelConfig c) {
        Map<String, long[]> s = new LinkedHashMap<>();
        int d = c.hiddenSize();
        int f = c.intermediateSize();
        s.put(WeightNames.EMBED, new long[] {c.vocabSize(), d});
        for (int i = 0; i < c.numLayers(); i++) {
            String p = WeightNames.layer(i);
            s.put(p + "input_layernorm.weight", new long[] {d});
            s.put(p + "self_attn.q_proj.weight", new long[] {c.qDim(), d});
            s.put(p + "self_attn.k_proj.weight", new long[] {c.kvDim(), d});
            s.put(p + "self_attn.v_proj.weight", new long[] {c.kvDim(), d});
            s.put(p + "self_attn.o_proj.weight", new long[] {d, c.qDim()});
            if (c.attentionBias()) {
                s.put(p + "self_attn.q_proj.bias", new long[] {c.qDim()});
                s.put(p + "self_attn.k_proj.bias", new long[] {c.kvDim()});
                s.put(p + "self_attn.v_proj.bias", new long[] {c.kvDim()});
            }
            s.put(p + "post_attention_layernorm.weight", new long[] {d});
            s.put(p + "mlp.gate_proj.weight", new long[] {f, d});
            s.put(p + "mlp.up_proj.weight", new long[] {f, d});
            s.put(p + "mlp.down_proj.weight", new long[] {d, f});
        }
        s.put(WeightNames.FINAL_NORM, new long[] {d});
        if (!c.tieWordEmbeddings()) {
            s.put(WeightNames.LM_HEAD, new long[] {c.vocabSize(), d});
        }
        return s;
    }

    private void add(String name, NDArray weight) {
        weight.setRequiresGradient(true);
        params.put(name, weight);
    }

    public ModelConfig config() {
        return config;
    }

    /** The trainable weights by Hugging Face name (live arrays: the optimizer updates them in place). */
    public Map<String, NDArray> parameters() {
        return params;
    }

    /**
     * Mean next-token cross-entropy of a batch.
     *
     * @param ids (batch, time) int64 inputs
     * @param targets (batch, time) int64 next tokens
     * @return scalar loss, differentiable with respect to every parameter
     */
    public NDArray loss(NDArray ids, NDArray targets) {
        NDArray logits = logits(ids);
        NDArray logp = logits.logSoftmax(-1);
        return logp.gather(targets.expandDims(-1), -1).mean().neg();
    }

    /** Logits of every position: (batch, time) ids → (batch, time, vocab). */
    public NDArray logits(NDArray ids) {
        ModelConfig c = config;
        long b = ids.getShape().get(0);
        long t = ids.getShape().get(1);
        if (t > c.maxPositionEmbeddings()) {
            throw new IllegalArgumentException("sequence of " + t + " tokens exceeds the context of "
                    + c.maxPositionEmbeddings());
        }
        NDManager m = ids.getManager();
        NDArray cos = ropeCos.get(new NDIndex(":{}", t)).expandDims(1); // (t, 1, headDim/2)
        NDArray sin = ropeSin.get(new NDIndex(":{}", t)).expandDims(1);
        NDArray mask = Ops.causalMask(m, 0, (int) t, c.slidingWindow());
        NDArray embed = params.get(WeightNames.EMBED);
        NDArray x = embed.get(new NDIndex("{}", ids)); // (b, t, hidden)
        for (int i = 0; i < c.numLayers(); i++) {
            String p = WeightNames.layer(i);
            NDArray h = Ops.rmsNorm(x, w(p + "input_layernorm.weight"), c.rmsNormEps());
            NDArray q = linear(h, p + "self_attn.q_proj").reshape(b, t, c.numHeads(), c.headDim());
            NDArray k = linear(h, p + "self_attn.k_proj").reshape(b, t, c.numKvHeads(), c.headDim());
            NDArray v = linear(h, p + "self_attn.v_proj").reshape(b, t, c.numKvHeads(), c.headDim());
            NDArray attn = Ops.causalSelfAttention(Ops.rope(q, cos, sin), Ops.rope(k, cos, sin), v, mask);
            x = x.add(attn.matMul(w(p + "self_attn.o_proj.weight").transpose()));
            NDArray g = Ops.rmsNorm(x, w(p + "post_attention_layernorm.weight"), c.rmsNormEps());
            x = x.add(Ops.swiglu(g, w(p + "mlp.gate_proj.weight").transpose(), w(p + "mlp.up_proj.weight").transpose(),
                    w(p + "mlp.down_proj.weight").transpose()));
        }
        NDArray h = Ops.rmsNorm(x, w(WeightNames.FINAL_NORM), c.rmsNormEps());
        NDArray head = c.tieWordEmbeddings() ? embed : w(WeightNames.LM_HEAD);
        return h.matMul(head.transpose());
    }

    private NDArray linear(NDArray x, String prefix) {
        NDArray y = x.matMul(w(prefix + ".weight").transpose());
        return config.attentionBias() ? y.add(w(prefix + ".bias")) : y;
    }

    private NDArray w(String name) {
        return params.get(name);
    }

    static long numel(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    @Override
    public void close() {
        manager.close();
    }
}
