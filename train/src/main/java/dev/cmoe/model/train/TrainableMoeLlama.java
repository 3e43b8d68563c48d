package dev.cmoe.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.arch.TensorNames;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.DecoderWeights;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.Linear;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.moe.BiasRule;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * A carved (Mixture-of-Experts) model as {@link LlamaModel}'s decoder with adapters, for CMoE's
 * lightweight adaptation. Every weight of the checkpoint stays frozen; what trains is a LoRA
 * adapter on q/k/v/o (the decoder's projections, made by this class's {@link DecoderWeights}) and
 * on every expert's (shared and routed) gate/up/down, plus each layer's router scales u (the FFN,
 * {@link AdaptedMoe}). The load-balancing bias b is not a gradient parameter: {@link #updateBias}
 * moves it from the loads measured by the forward. Routing is {@code MoeFeedForward}'s, through
 * the same {@link Routing#select}: s' = softmax(|(x·Cᵀ) ⊙ SiLU(x·Gᵀ)|), top-N_k of s' + b, gate
 * g = 1 + s'·u on each selected expert, shared expert always on. The selection is a constant of
 * the graph; u (and the layers below) receive gradients through the gate values.
 */
public final class TrainableMoeLlama implements AutoCloseable {
    private final ModelConfig config;
    private final MoeConfig moe;
    private final LoraSpec lora;
    private final Map<String, NDArray> trainable = new LinkedHashMap<>(); // name -> LoRA A/B or router scale u
    private final List<LoraLinear> attention = new ArrayList<>(); // q, k, v, o of every layer, in order
    private final List<AdaptedMoe> ffns = new ArrayList<>();      // index = layer
    private final LlamaModel model;
    private boolean training; // whether adapter inputs pass through dropout in the running forward

    private TrainableMoeLlama(ModelConfig config, MoeConfig moe, TensorSource source, LoraSpec lora, long seed) {
        this.config = config;
        this.moe = moe;
        this.lora = lora;
        NDManager manager = NDManager.newBaseManager();
        SplittableRandom random = new SplittableRandom(seed);
        this.model = LlamaModel.create(config, new Adapted(manager, source, random), (w, layer) -> {
            AdaptedMoe ffn = new AdaptedMoe(manager, source, layer, random);
            ffns.add(ffn);
            return ffn;
        });
    }

    /**
     * Loads a carved checkpoint with fresh adapters: A uniform in ±1/√in from {@code seed}, B = 0,
     * so the adapted model starts as the checkpoint; u and b start from the checkpoint's values.
     */
    public static TrainableMoeLlama load(ModelConfig config, MoeConfig moe, TensorSource source, LoraSpec lora,
                                         long seed) {
        return new TrainableMoeLlama(config, moe, source, lora, seed);
    }

    public ModelConfig config() {
        return config;
    }

    public MoeConfig moe() {
        return moe;
    }

    /**
     * The trainable arrays by name (live: the optimizer updates them in place): per adapted weight
     * {@code NAME.lora_A} (r, in) and {@code NAME.lora_B} (out, r), where NAME is the weight's name
     * without ".weight" and routed experts' adapters are stacked as
     * {@code model.layers.L.mlp.experts.PROJ.lora_A} (N_r, r, in) / {@code .lora_B} (N_r, out, r);
     * and per layer the router scales {@code model.layers.L.mlp.router.scale} (N_r).
     */
    public Map<String, NDArray> parameters() {
        return trainable;
    }

    /** Whether {@code name} of {@link #parameters()} is a router scale u (it trains at its own rate). */
    public static boolean isRouterScale(String name) {
        return name.endsWith(".mlp.router.scale");
    }

    /** Mean next-token cross-entropy of a batch; see {@link #logits}. */
    public NDArray loss(NDArray ids, NDArray targets, boolean training) {
        NDArray logp = logits(ids, training).logSoftmax(-1);
        return logp.gather(targets.expandDims(-1), -1).mean().neg();
    }

    /**
     * Logits of every position: (batch, time) ids → (batch, time, vocab). Adds each layer's expert
     * selections to the loads that {@link #takeLoads} returns.
     *
     * @param training whether the adapters' inputs pass through dropout
     */
    public NDArray logits(NDArray ids, boolean training) {
        this.training = training;
        return model.windowLogits(ids);
    }

    /**
     * An adapter input after dropout (while training). Adapters that read the same input share
     * one mask (q/k/v; every gate and up projection of a layer): PEFT draws one per adapter, but
     * the Bernoulli draws are a fifth of a CPU step here, and the masks' correlation across
     * adapters does not change what dropout is for.
     */
    private NDArray dropout(NDArray x) {
        return Lora.dropout(x, lora.dropout(), training);
    }

    /** Tokens routed to each expert, (layers, N_r), since the last call; then starts counting again. */
    public long[][] takeLoads() {
        long[][] out = new long[ffns.size()][];
        for (int l = 0; l < out.length; l++) {
            out[l] = ffns.get(l).loads.clone();
            java.util.Arrays.fill(ffns.get(l).loads, 0);
        }
        return out;
    }

    /** b of layer {@code layer} (a copy). */
    public float[] bias(int layer) {
        return ffns.get(layer).bias.clone();
    }

    /** u of layer {@code layer} (a copy of the live values). */
    public float[] scale(int layer) {
        return ffns.get(layer).scale.toFloatArray();
    }

    /** Applies {@link BiasRule} to every layer's b from that layer's {@code loads} (layers, N_r). */
    public void updateBias(long[][] loads, double gamma) {
        if (loads.length != ffns.size()) {
            throw new IllegalArgumentException("loads for " + loads.length + " layers, the model has " + ffns.size());
        }
        for (int l = 0; l < ffns.size(); l++) {
            BiasRule.update(ffns.get(l).bias, loads[l], gamma);
        }
    }

    /**
     * Every checkpoint tensor that adaptation changes: the q/k/v/o weights and every expert's
     * gate/up/down, with the adapters folded in ({@code merge}) or as loaded, and each layer's
     * router scale u and bias b. All other tensors of the checkpoint are unchanged.
     */
    public Map<String, SafetensorsWriter.Tensor> checkpointTensors(boolean merge) {
        Map<String, SafetensorsWriter.Tensor> out = new LinkedHashMap<>();
        for (int i = 0; i < ffns.size(); i++) {
            AdaptedMoe f = ffns.get(i);
            List<LoraLinear> linears = new ArrayList<>(attention.subList(4 * i, 4 * i + 4));
            if (f.sharedGate != null) {
                linears.addAll(List.of(f.sharedGate, f.sharedUp, f.sharedDown));
            }
            for (LoraLinear lin : linears) {
                out.put(lin.name(), tensor(lin.shape(), merge ? lin.merged() : lin.base()));
            }
            long[] expertIn = {moe.expertSize(), config.hiddenSize()};
            long[] expertOut = {config.hiddenSize(), moe.expertSize()};
            f.experts.weights(merge).forEach((name, v) ->
                    out.put(name, tensor(name.endsWith(MoeWeightNames.DOWN + ".weight") ? expertOut : expertIn, v)));
            out.put(MoeWeightNames.routerScale(i), tensor(new long[] {moe.routed()}, f.scale.toFloatArray()));
            out.put(MoeWeightNames.routerBias(i), tensor(new long[] {moe.routed()}, f.bias.clone()));
        }
        return out;
    }

    /** The training state to resume from: every trainable array (by its name) and each layer's b. */
    public Map<String, SafetensorsWriter.Tensor> adapterTensors() {
        Map<String, SafetensorsWriter.Tensor> out = new LinkedHashMap<>();
        trainable.forEach((name, a) -> out.put(name, tensor(a.getShape().getShape(), a.toFloatArray())));
        for (int i = 0; i < ffns.size(); i++) {
            out.put(MoeWeightNames.routerBias(i), tensor(new long[] {moe.routed()}, ffns.get(i).bias.clone()));
        }
        return out;
    }

    /** Restores what {@link #adapterTensors} saved, in place (the optimizer keeps its references). */
    public void restoreAdapters(TensorSource source) {
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            for (Map.Entry<String, NDArray> e : trainable.entrySet()) {
                e.getValue().set(source.read(e.getKey(), e.getValue().getShape().getShape()));
            }
        }
        for (int i = 0; i < ffns.size(); i++) {
            source.read(MoeWeightNames.routerBias(i), moe.routed()).duplicate().get(ffns.get(i).bias);
        }
    }

    private static SafetensorsWriter.Tensor tensor(long[] shape, float[] values) {
        return new SafetensorsWriter.Tensor(shape, FloatBuffer.wrap(values));
    }

    @Override
    public void close() {
        model.close();
    }

    /**
     * The decoder's weights for adaptation: frozen tensors, and a LoRA adapter on each attention
     * projection. q, k and v read the same normalised input and so share one dropout mask.
     */
    private final class Adapted implements DecoderWeights {
        private final DecoderWeights frozen;
        private final SplittableRandom random;
        private NDArray lastInput;   // the input the last q/k/v dropout was drawn for
        private NDArray lastDropped;

        Adapted(NDManager manager, TensorSource source, SplittableRandom random) {
            this.frozen = DecoderWeights.frozen(manager, source);
            this.random = random;
        }

        @Override
        public NDManager manager() {
            return frozen.manager();
        }

        @Override
        public TensorSource source() {
            return frozen.source();
        }

        @Override
        public NDArray tensor(String name, long... shape) {
            return frozen.tensor(name, shape);
        }

        /** Every projection the decoder asks for is an attention one, but the LM head, which stays as it is. */
        @Override
        public Linear linear(String name, String biasName, int out, int in) {
            if (name.equals(TensorNames.LM_HEAD)) {
                return frozen.linear(name, biasName, out, in);
            }
            boolean output = name.endsWith(TensorNames.O + ".weight");
            LoraLinear adapted = new LoraLinear(name, Tensors.load(manager(), source(), name, out, in), lora, random,
                    trainable, output ? TrainableMoeLlama.this::dropout : this::sharedDropout);
            attention.add(adapted);
            if (biasName == null) {
                return adapted;
            }
            NDArray bias = Tensors.load(manager(), source(), biasName, out);
            return x -> adapted.apply(x).add(bias);
        }

        @Override
        public Linear tied(NDArray embed) {
            return frozen.tied(embed);
        }

        private NDArray sharedDropout(NDArray x) {
            if (x != lastInput) {
                lastInput = x;
                lastDropped = dropout(x);
            }
            return lastDropped;
        }
    }

    /** One layer's carved FFN with adapters: the router, the shared expert and the routed experts. */
    private final class AdaptedMoe implements FeedForward {
        final LoraLinear sharedGate; // null when N_s = 0
        final LoraLinear sharedUp;
        final LoraLinear sharedDown;
        final RoutedExperts experts;
        final NDArray classifierT;   // (hidden, N_r) frozen
        final NDArray routerGateT;   // (hidden, N_r) frozen
        final NDArray scale;         // (N_r) u, trainable
        final float[] bias;          // (N_r) b
        final long[] loads;          // (N_r) tokens routed to each expert since takeLoads()
        final int active;            // N_k of this layer

        AdaptedMoe(NDManager manager, TensorSource source, int i, SplittableRandom random) {
            int d = config.hiddenSize();
            active = moe.active(i);
            int nr = moe.routed();
            if (moe.shared() > 0) {
                int s = moe.sharedSize();
                sharedGate = adapted(manager, source, MoeWeightNames.shared(i, MoeWeightNames.GATE), random, s, d);
                sharedUp = adapted(manager, source, MoeWeightNames.shared(i, MoeWeightNames.UP), random, s, d);
                sharedDown = adapted(manager, source, MoeWeightNames.shared(i, MoeWeightNames.DOWN), random, d, s);
            } else {
                sharedGate = null;
                sharedUp = null;
                sharedDown = null;
            }
            experts = new RoutedExperts(manager, source, i, nr, moe.expertSize(), d, lora, random, trainable);
            classifierT = Tensors.transposedView(
                    Tensors.load(manager, source, MoeWeightNames.routerClassifier(i), nr, d));
            routerGateT = Tensors.transposedView(Tensors.load(manager, source, MoeWeightNames.routerGate(i), nr, d));
            scale = Tensors.load(manager, source, MoeWeightNames.routerScale(i), nr);
            Lora.register(trainable, MoeWeightNames.routerScale(i), scale);
            bias = new float[nr];
            source.read(MoeWeightNames.routerBias(i), nr).duplicate().get(bias);
            loads = new long[nr];
        }

        private LoraLinear adapted(NDManager manager, TensorSource source, String name, SplittableRandom random,
                                   int out, int in) {
            return new LoraLinear(name, Tensors.load(manager, source, name, out, in), lora, random, trainable);
        }

        /** f: (N, hidden) → (N, hidden). */
        @Override
        public NDArray forward(NDArray f) {
            int n = Math.toIntExact(f.getShape().get(0));
            int nr = moe.routed();
            // route: s' on the engine (differentiable, for the gates), top-N_k of s' + b in Java
            NDArray probs = f.matMul(classifierT).mul(Ops.silu(f.matMul(routerGateT))).abs().softmax(-1); // (N, N_r)
            Routing routing = Routing.select(probs.toFloatArray(), n, active, bias, scale.toFloatArray());
            float[] chosen = new float[n * nr]; // (N, N_r) 1 on each token's selected experts
            for (int tok = 0; tok < n; tok++) {
                for (int s = 0; s < active; s++) {
                    int j = routing.expert(tok, s);
                    chosen[tok * nr + j] = 1;
                    loads[j]++;
                }
            }
            // gates g = 1 + s'·u on the selected experts, 0 on the others: u trains through them
            NDArray g = probs.mul(scale).add(1).mul(f.getManager().create(chosen, new Shape(n, nr)));
            NDArray fd = dropout(f);
            NDArray out = experts.forward(f, fd, g, training);
            if (sharedGate != null) {
                NDArray hidden = Ops.silu(sharedGate.forward(f, fd)).mul(sharedUp.forward(f, fd));
                out = out.add(sharedDown.forward(hidden, dropout(hidden)));
            }
            return out;
        }

        @Override
        public void close() {
            // every array lives in the model's manager
        }
    }
}
