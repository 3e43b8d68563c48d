package dev.cmoe.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.llama.WeightNames;
import dev.cmoe.model.moe.BiasRule;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import java.nio.FloatBuffer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * A carved (Mixture-of-Experts) LLaMA as a DJL-autograd forward for CMoE's lightweight
 * adaptation. Every weight of the checkpoint stays frozen; what trains is a LoRA adapter on
 * q/k/v/o and on every expert's (shared and routed) gate/up/down, plus each layer's router
 * scales u. The load-balancing bias b is not a gradient parameter: {@link #updateBias} moves it
 * from the loads measured by the forward. Routing is {@code MoeFeedForward}'s, through the same
 * {@link Routing#select}: s' = softmax(|(x·Cᵀ) ⊙ SiLU(x·Gᵀ)|), top-N_k of s' + b, gate
 * g = 1 + s'·u on each selected expert, shared expert always on. The selection is a constant
 * of the graph; u (and the layers below) receive gradients through the gate values.
 */
public final class TrainableMoeLlama implements AutoCloseable {
    private final ModelConfig config;
    private final MoeConfig moe;
    private final LoraSpec lora;
    private final NDManager manager;
    private final NDArray embed;     // (vocab, hidden) frozen
    private final NDArray lmHeadT;   // (hidden, vocab) frozen, embedᵀ when tied
    private final NDArray finalNorm; // (hidden)
    private final NDArray ropeCos;   // (context, headDim/2)
    private final NDArray ropeSin;   // (context, headDim/2)
    private final Layer[] layers;
    private final Map<String, NDArray> trainable = new LinkedHashMap<>(); // name -> LoRA A/B or router scale u
    private final float[][] bias;    // (layers, N_r) b
    private final long[][] loads;    // (layers, N_r) tokens routed to each expert since takeLoads()

    /** One decoder layer: frozen weights with adapters, the frozen router, and its scales u. */
    private static final class Layer {
        NDArray attnNorm;                            // (hidden)
        LoraLinear q;
        LoraLinear k;
        LoraLinear v;
        LoraLinear o;
        NDArray bq;                                  // (qDim) or null
        NDArray bk;                                  // (kvDim) or null
        NDArray bv;                                  // (kvDim) or null
        NDArray ffnNorm;                             // (hidden)
        LoraLinear sharedGate;                       // null when N_s = 0
        LoraLinear sharedUp;
        LoraLinear sharedDown;
        RoutedExperts experts;
        NDArray classifierT;                         // (hidden, N_r) frozen
        NDArray routerGateT;                         // (hidden, N_r) frozen
        NDArray scale;                               // (N_r) u, trainable
    }

    private TrainableMoeLlama(ModelConfig config, MoeConfig moe, NDManager manager, TensorSource source,
                              LoraSpec lora, long seed) {
        this.config = config;
        this.moe = moe;
        this.lora = lora;
        this.manager = manager;
        int d = config.hiddenSize();
        embed = Tensors.load(manager, source, WeightNames.EMBED, config.vocabSize(), d);
        lmHeadT = config.tieWordEmbeddings() ? embed.transpose()
                : Tensors.transposedView(Tensors.load(manager, source, WeightNames.LM_HEAD, config.vocabSize(), d));
        finalNorm = Tensors.load(manager, source, WeightNames.FINAL_NORM, d);
        NDArray[] rope = Ops.ropeTables(manager, config.maxPositionEmbeddings(), config.headDim(), config.ropeTheta());
        ropeCos = rope[0];
        ropeSin = rope[1];
        SplittableRandom random = new SplittableRandom(seed);
        layers = new Layer[config.numLayers()];
        bias = new float[config.numLayers()][];
        loads = new long[config.numLayers()][moe.routed()];
        for (int i = 0; i < layers.length; i++) {
            layers[i] = loadLayer(source, i, lora, random);
        }
    }

    /**
     * Loads a carved checkpoint with fresh adapters: A uniform in ±1/√in from {@code seed}, B = 0,
     * so the adapted model starts as the checkpoint; u and b start from the checkpoint's values.
     */
    public static TrainableMoeLlama load(ModelConfig config, MoeConfig moe, TensorSource source, LoraSpec lora,
                                         long seed) {
        NDManager manager = NDManager.newBaseManager();
        try {
            return new TrainableMoeLlama(config, moe, manager, source, lora, seed);
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    private Layer loadLayer(TensorSource source, int i, LoraSpec lora, SplittableRandom random) {
        String p = WeightNames.layer(i);
        int d = config.hiddenSize();
        int q = config.qDim();
        int kv = config.kvDim();
        int nr = moe.routed();
        Layer l = new Layer();
        l.attnNorm = Tensors.load(manager, source, p + "input_layernorm.weight", d);
        l.q = adapted(source, p + "self_attn.q_proj.weight", lora, random, q, d);
        l.k = adapted(source, p + "self_attn.k_proj.weight", lora, random, kv, d);
        l.v = adapted(source, p + "self_attn.v_proj.weight", lora, random, kv, d);
        l.o = adapted(source, p + "self_attn.o_proj.weight", lora, random, d, q);
        if (config.attentionBias()) {
            l.bq = Tensors.load(manager, source, p + "self_attn.q_proj.bias", q);
            l.bk = Tensors.load(manager, source, p + "self_attn.k_proj.bias", kv);
            l.bv = Tensors.load(manager, source, p + "self_attn.v_proj.bias", kv);
        }
        l.ffnNorm = Tensors.load(manager, source, p + "post_attention_layernorm.weight", d);
        if (moe.shared() > 0) {
            int s = moe.sharedSize();
            l.sharedGate = adapted(source, MoeWeightNames.shared(i, MoeWeightNames.GATE), lora, random, s, d);
            l.sharedUp = adapted(source, MoeWeightNames.shared(i, MoeWeightNames.UP), lora, random, s, d);
            l.sharedDown = adapted(source, MoeWeightNames.shared(i, MoeWeightNames.DOWN), lora, random, d, s);
        }
        l.experts = new RoutedExperts(manager, source, i, nr, moe.expertSize(), d, lora, random, trainable);
        l.classifierT = Tensors.transposedView(
                Tensors.load(manager, source, MoeWeightNames.routerClassifier(i), nr, d));
        l.routerGateT = Tensors.transposedView(Tensors.load(manager, source, MoeWeightNames.routerGate(i), nr, d));
        l.scale = Tensors.load(manager, source, MoeWeightNames.routerScale(i), nr);
        Lora.register(trainable, MoeWeightNames.routerScale(i), l.scale);
        FloatBuffer b = source.read(MoeWeightNames.routerBias(i), nr);
        bias[i] = new float[nr];
        b.duplicate().get(bias[i]);
        return l;
    }

    private LoraLinear adapted(TensorSource source, String name, LoraSpec lora, SplittableRandom random,
                               int out, int in) {
        return new LoraLinear(name, Tensors.load(manager, source, name, out, in), lora, random, trainable);
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
        long b = ids.getShape().get(0);
        long t = ids.getShape().get(1);
        if (t > config.maxPositionEmbeddings()) {
            throw new IllegalArgumentException("sequence of " + t + " tokens exceeds the context of "
                    + config.maxPositionEmbeddings());
        }
        NDArray cos = ropeCos.get(new NDIndex(":{}", t)).expandDims(1); // (t, 1, headDim/2)
        NDArray sin = ropeSin.get(new NDIndex(":{}", t)).expandDims(1);
        NDArray mask = Ops.causalMask(ids.getManager(), 0, (int) t, config.slidingWindow());
        NDArray x = embed.get(new NDIndex("{}", ids)); // (b, t, hidden)
        for (int l = 0; l < layers.length; l++) {
            x = layer(l, x, cos, sin, mask, training);
        }
        return Ops.rmsNorm(x, finalNorm, config.rmsNormEps()).matMul(lmHeadT);
    }

    /** One decoder layer. x: (b, t, hidden) → (b, t, hidden). */
    private NDArray layer(int l, NDArray x, NDArray cos, NDArray sin, NDArray mask, boolean training) {
        Layer w = layers[l];
        long b = x.getShape().get(0);
        long t = x.getShape().get(1);
        int d = config.hiddenSize();
        // attention: adapted projections, RoPE, causal grouped-query attention, adapted output
        NDArray h = Ops.rmsNorm(x, w.attnNorm, config.rmsNormEps());
        NDArray hd = dropout(h, training);
        NDArray q = withBias(w.q.forward(h, hd), w.bq).reshape(b, t, config.numHeads(), config.headDim());
        NDArray k = withBias(w.k.forward(h, hd), w.bk).reshape(b, t, config.numKvHeads(), config.headDim());
        NDArray v = withBias(w.v.forward(h, hd), w.bv).reshape(b, t, config.numKvHeads(), config.headDim());
        NDArray attn = Ops.causalSelfAttention(Ops.rope(q, cos, sin), Ops.rope(k, cos, sin), v, mask);
        x = x.add(w.o.forward(attn, dropout(attn, training)));
        // feed-forward: the carved MoE over every token of the batch as one (b·t, hidden) matrix
        NDArray f = Ops.rmsNorm(x, w.ffnNorm, config.rmsNormEps()).reshape(b * t, d);
        return x.add(feedForward(l, f, training).reshape(b, t, d));
    }

    /** The carved FFN with adapters. f: (N, hidden) → (N, hidden). */
    private NDArray feedForward(int l, NDArray f, boolean training) {
        Layer w = layers[l];
        int n = Math.toIntExact(f.getShape().get(0));
        int nr = moe.routed();
        // route: s' on the engine (differentiable, for the gates), top-N_k of s' + b in Java
        NDArray probs = f.matMul(w.classifierT).mul(Ops.silu(f.matMul(w.routerGateT))).abs().softmax(-1); // (N, N_r)
        Routing routing = Routing.select(probs.toFloatArray(), n, moe.active(), bias[l], w.scale.toFloatArray());
        float[] chosen = new float[n * nr]; // (N, N_r) 1 on each token's selected experts
        for (int tok = 0; tok < n; tok++) {
            for (int s = 0; s < moe.active(); s++) {
                int j = routing.expert(tok, s);
                chosen[tok * nr + j] = 1;
                loads[l][j]++;
            }
        }
        // gates g = 1 + s'·u on the selected experts, 0 on the others: u trains through them
        NDArray g = probs.mul(w.scale).add(1).mul(f.getManager().create(chosen, new Shape(n, nr)));
        NDArray fd = dropout(f, training);
        NDArray out = w.experts.forward(f, fd, g, training);
        if (w.sharedGate != null) {
            NDArray hidden = Ops.silu(w.sharedGate.forward(f, fd)).mul(w.sharedUp.forward(f, fd));
            out = out.add(w.sharedDown.forward(hidden, dropout(hidden, training)));
        }
        return out;
    }

    /**
     * An adapter input after dropout (while training). Adapters that read the same input share
     * one mask (q/k/v; every gate and up projection of a layer): PEFT draws one per adapter, but
     * the Bernoulli draws are a fifth of a CPU step here, and the masks' correlation across
     * adapters does not change what dropout is for.
     */
    private NDArray dropout(NDArray x, boolean training) {
        return Lora.dropout(x, lora.dropout(), training);
    }

    private static NDArray withBias(NDArray y, NDArray bias) {
        return bias == null ? y : y.add(bias);
    }

    /** Tokens routed to each expert, (layers, N_r), since the last call; then starts counting again. */
    public long[][] takeLoads() {
        long[][] out = new long[loads.length][];
        for (int l = 0; l < loads.length; l++) {
            out[l] = loads[l].clone();
            java.util.Arrays.fill(loads[l], 0);
        }
        return out;
    }

    /** b of layer {@code layer} (a copy). */
    public float[] bias(int layer) {
        return bias[layer].clone();
    }

    /** u of layer {@code layer} (a copy of the live values). */
    public float[] scale(int layer) {
        return layers[layer].scale.toFloatArray();
    }

    /** Applies {@link BiasRule} to every layer's b from that layer's {@code loads} (layers, N_r). */
    public void updateBias(long[][] loads, double gamma) {
        if (loads.length != layers.length) {
            throw new IllegalArgumentException("loads for " + loads.length + " layers, the model has " + layers.length);
        }
        for (int l = 0; l < layers.length; l++) {
            BiasRule.update(bias[l], loads[l], gamma);
        }
    }

    /**
     * Every checkpoint tensor that adaptation changes: the q/k/v/o weights and every expert's
     * gate/up/down, with the adapters folded in ({@code merge}) or as loaded, and each layer's
     * router scale u and bias b. All other tensors of the checkpoint are unchanged.
     */
    public Map<String, SafetensorsWriter.Tensor> checkpointTensors(boolean merge) {
        Map<String, SafetensorsWriter.Tensor> out = new LinkedHashMap<>();
        for (int i = 0; i < layers.length; i++) {
            Layer l = layers[i];
            LoraLinear[] linears = l.sharedGate == null ? new LoraLinear[] {l.q, l.k, l.v, l.o}
                    : new LoraLinear[] {l.q, l.k, l.v, l.o, l.sharedGate, l.sharedUp, l.sharedDown};
            for (LoraLinear lin : linears) {
                out.put(lin.name(), tensor(lin.shape(), merge ? lin.merged() : lin.base()));
            }
            long[] expertIn = {moe.expertSize(), config.hiddenSize()};
            long[] expertOut = {config.hiddenSize(), moe.expertSize()};
            l.experts.weights(merge).forEach((name, v) ->
                    out.put(name, tensor(name.endsWith(MoeWeightNames.DOWN + ".weight") ? expertOut : expertIn, v)));
            out.put(MoeWeightNames.routerScale(i), tensor(new long[] {moe.routed()}, l.scale.toFloatArray()));
            out.put(MoeWeightNames.routerBias(i), tensor(new long[] {moe.routed()}, bias[i].clone()));
        }
        return out;
    }

    /** The training state to resume from: every trainable array (by its name) and each layer's b. */
    public Map<String, SafetensorsWriter.Tensor> adapterTensors() {
        Map<String, SafetensorsWriter.Tensor> out = new LinkedHashMap<>();
        trainable.forEach((name, a) -> out.put(name, tensor(a.getShape().getShape(), a.toFloatArray())));
        for (int i = 0; i < layers.length; i++) {
            out.put(MoeWeightNames.routerBias(i), tensor(new long[] {moe.routed()}, bias[i].clone()));
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
        for (int i = 0; i < layers.length; i++) {
            source.read(MoeWeightNames.routerBias(i), moe.routed()).duplicate().get(bias[i]);
        }
    }

    private static SafetensorsWriter.Tensor tensor(long[] shape, float[] values) {
        return new SafetensorsWriter.Tensor(shape, FloatBuffer.wrap(values));
    }

    @Override
    public void close() {
        manager.close();
    }
}
