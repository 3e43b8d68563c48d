package dev.cmoe.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.arch.Layout;
import dev.cmoe.model.arch.TensorNames;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.DecoderWeights;
import dev.cmoe.model.llama.Linear;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import java.nio.FloatBuffer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The decoder as trainable parameters for DJL autograd: {@link LlamaModel}'s own layers over
 * whole sequences with no KV cache, every weight a parameter kept in Hugging Face layout and
 * names, so a checkpoint is a direct dump of {@link #parameters()} that the inference loader
 * reads back.
 */
public final class TrainableLlama implements AutoCloseable {
    private final ModelConfig config;
    private final Map<String, NDArray> params; // HF name -> weight, HF shape
    private final LlamaModel model;

    private TrainableLlama(ModelConfig config, NDManager manager, Map<String, NDArray> params) {
        this.config = config;
        this.params = params;
        params.values().forEach(p -> p.setRequiresGradient(true));
        this.model = LlamaModel.create(config, new Parameters(manager, params), LlamaModel.denseFeedForwards(config));
    }

    /**
     * A freshly initialised model: N(0, 0.02) weights, residual output projections scaled by
     * 1/√(2·layers) (GPT-2's rule, which keeps the residual stream's variance flat with depth),
     * unit norms. The numbers come from a Java generator so the same seed gives the same model on
     * every engine and thread count.
     */
    public static TrainableLlama initialise(ModelConfig config, long seed) {
        NDManager manager = NDManager.newBaseManager();
        try {
            SplittableRandom r = new SplittableRandom(seed);
            double std = 0.02;
            double residualStd = std / Math.sqrt(2.0 * config.numLayers());
            Map<String, NDArray> params = new LinkedHashMap<>();
            for (Map.Entry<String, long[]> e : shapes(config).entrySet()) {
                String name = e.getKey();
                long[] shape = e.getValue();
                float[] v = new float[Math.toIntExact(numel(shape))];
                if (TensorNames.isNorm(name)) {
                    java.util.Arrays.fill(v, 1f);
                } else if (!name.endsWith(".bias")) {
                    boolean residual = name.endsWith(TensorNames.O + ".weight") || name.endsWith(TensorNames.DOWN + ".weight");
                    double s = residual ? residualStd : std;
                    for (int i = 0; i < v.length; i++) {
                        v[i] = (float) (r.nextGaussian() * s);
                    }
                }
                params.put(name, Tensors.create(manager, FloatBuffer.wrap(v), shape));
            }
            return new TrainableLlama(config, manager, params);
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    /** Loads every parameter of {@code config} from {@code source}, e.g. to resume training. */
    public static TrainableLlama load(ModelConfig config, TensorSource source) {
        NDManager manager = NDManager.newBaseManager();
        try {
            Map<String, NDArray> params = new LinkedHashMap<>();
            for (Map.Entry<String, long[]> e : shapes(config).entrySet()) {
                params.put(e.getKey(), Tensors.load(manager, source, e.getKey(), e.getValue()));
            }
            return new TrainableLlama(config, manager, params);
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    /** Every parameter name of a dense model of {@code config} with its Hugging Face shape, in checkpoint order. */
    public static Map<String, long[]> shapes(ModelConfig c) {
        return Layout.dense(c);
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
        NDArray logp = logits(ids).logSoftmax(-1);
        return logp.gather(targets.expandDims(-1), -1).mean().neg();
    }

    /** Logits of every position: (batch, time) ids → (batch, time, vocab). */
    public NDArray logits(NDArray ids) {
        return model.windowLogits(ids);
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
        model.close();
    }

    /** The decoder's weights as the parameters themselves: projections transpose W on every call. */
    private record Parameters(NDManager manager, Map<String, NDArray> params) implements DecoderWeights {
        @Override
        public TensorSource source() {
            throw new UnsupportedOperationException("a trainable model's weights are its parameters, not a source");
        }

        @Override
        public NDArray tensor(String name, long... shape) {
            return param(name);
        }

        @Override
        public Linear linear(String name, String biasName, int out, int in) {
            return Linear.parameter(param(name), biasName == null ? null : param(biasName));
        }

        @Override
        public Linear tied(NDArray embed) {
            return Linear.parameter(embed, null);
        }

        private NDArray param(String name) {
            NDArray p = params.get(name);
            if (p == null) {
                throw new IllegalStateException("no parameter " + name);
            }
            return p;
        }
    }
}
