package dev.cmoe.model.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.LayerScript;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.llama.WeightKernels;
import java.nio.FloatBuffer;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * A carved FFN: an always-on shared expert plus N_k of N_r routed SwiGLU experts per token,
 * chosen by CMoE's analytical router. This in-process forward is the reference that the
 * distributed server reproduces, so it is split the same way: {@link #route}, {@link #expert},
 * {@link #shared} and {@link #combine} are each usable on their own. In process, a step's routed
 * experts run grouped ({@link GroupedExperts}): a few engine calls for all of them, whatever the
 * number selected.
 *
 * <pre>
 * s  = |(x·classifierᵀ) ⊙ SiLU(x·gateᵀ)|          (T, N_r)
 * s' = softmax(s) over experts                    in Java, double precision
 * selected = top-N_k of (s' + b)                  b changes selection only
 * out = shared(x) + Σ_selected (1 + s'_j·u_j) · expert_j(x)
 * </pre>
 */
public final class MoeFeedForward implements FeedForward {
    private final MoeConfig moe;
    private final WeightKernels kernels; // the experts' dtype; the router is float32
    private final NDArray sharedGateUpT; // (hidden, 2·N_s·m): gate and up fused, null when N_s = 0
    private final NDArray sharedDownT;   // (N_s·m, hidden)
    private volatile GroupedExperts experts; // the routed experts, null once released or when served elsewhere
    private final NDArray routerT;       // (hidden, 2·N_r): classifier and router gate fused
    private final float[] scale;        // (N_r) u
    private volatile float[] bias;      // (N_r) b, replaced whole by setBias
    private final AtomicLongArray loads; // (N_r) tokens routed to each expert since the last reset

    private MoeFeedForward(MoeConfig moe, WeightKernels kernels, NDArray[] shared, GroupedExperts experts,
                           NDArray router, float[] scale, float[] bias) {
        this.moe = moe;
        this.kernels = kernels;
        this.sharedGateUpT = shared == null ? null : Tensors.transposedView(shared[0]);
        this.sharedDownT = shared == null ? null : Tensors.transposedView(shared[1]);
        this.experts = experts;
        this.routerT = Tensors.transposedView(router);
        this.scale = scale.clone();
        this.bias = bias.clone();
        this.loads = new AtomicLongArray(moe.routed());
    }

    /**
     * Loads layer {@code layer}'s experts and router (names in {@link MoeWeightNames}) into
     * {@code manager}, the experts in float32.
     */
    public static MoeFeedForward load(NDManager manager, TensorSource source, int layer, ModelConfig config,
                                      MoeConfig moe) {
        return load(manager, source, layer, config, moe, true, WeightKernels.f32());
    }

    /**
     * As {@link #load}, the experts held by {@code kernels}; its {@link #config()} is the
     * block {@link MoeConfig#forLayer as this layer sees it}. Without {@code routedExperts} no
     * routed expert tensor is read: the layer routes, runs its shared expert and combines, for a
     * server whose expert actors hold the rest. The routed experts are stacked per layer (see
     * {@link GroupedExperts}); the shared expert's gate and up, and the router's two matrices,
     * are each fused into one projection.
     */
    public static MoeFeedForward load(NDManager manager, TensorSource source, int layer, ModelConfig config,
                                      MoeConfig block, boolean routedExperts, WeightKernels kernels) {
        MoeConfig moe = block.forLayer(layer); // this layer's N_k where the carve gave layers their own
        int d = config.hiddenSize();
        int nRouted = moe.routed();
        NDArray[] shared = null;
        if (moe.shared() > 0) {
            int s = moe.sharedSize();
            shared = new NDArray[] {
                fused(kernels,
                        kernels.load(manager, source, MoeWeightNames.shared(layer, MoeWeightNames.GATE), s, d),
                        kernels.load(manager, source, MoeWeightNames.shared(layer, MoeWeightNames.UP), s, d)),
                kernels.load(manager, source, MoeWeightNames.shared(layer, MoeWeightNames.DOWN), d, s)};
        }
        GroupedExperts experts = routedExperts ? GroupedExperts.load(manager, source, layer, d, moe, kernels) : null;
        WeightKernels f32 = WeightKernels.f32();
        NDArray router = fused(f32,
                Tensors.load(manager, source, MoeWeightNames.routerClassifier(layer), nRouted, d),
                Tensors.load(manager, source, MoeWeightNames.routerGate(layer), nRouted, d));
        float[] scale = floats(source.read(MoeWeightNames.routerScale(layer), nRouted));
        float[] bias = floats(source.read(MoeWeightNames.routerBias(layer), nRouted));
        return new MoeFeedForward(moe, kernels, shared, experts, router, scale, bias);
    }

    /** Weights {@code a} (p, in) over {@code b} (q, in) in one (p + q, in) tensor; closes both. */
    private static NDArray fused(WeightKernels kernels, NDArray a, NDArray b) {
        try {
            return kernels.concat(new NDArray[] {a, b}, 0);
        } finally {
            a.close();
            b.close();
        }
    }

    private static float[] floats(FloatBuffer b) {
        float[] v = new float[b.remaining()];
        b.duplicate().get(v);
        return v;
    }

    @Override
    public NDArray forward(NDArray x) {
        return forward(x, GroupedExperts.Strategy.AUTO);
    }

    /** {@link #forward} with the experts multiplied as {@code strategy} says: tests and benchmarks compare them. */
    NDArray forward(NDArray x, GroupedExperts.Strategy strategy) {
        GroupedExperts e = requireExperts();
        Routing routing = route(x);
        NDArray routed = e.forward(x, routing, strategy);
        return sharedGateUpT == null ? routed : shared(x).add(routed);
    }

    /** With the routed experts in this process and a script of their dtype, the whole block is one script call after routing. */
    @Override
    public NDArray addTo(NDArray residual, NDArray x, LayerScript script) {
        GroupedExperts e = experts;
        if (e == null || script == null || script.dtype() != kernels.dtype()) {
            return FeedForward.super.addTo(residual, x, script);
        }
        return addTo(residual, x, script, GroupedExperts.Strategy.AUTO);
    }

    /** {@link #addTo} with the experts multiplied as {@code strategy} says. */
    NDArray addTo(NDArray residual, NDArray x, LayerScript script, GroupedExperts.Strategy strategy) {
        Routing routing = route(x);
        return requireExperts().addTo(residual, x, routing, strategy, script,
                sharedGateUpT == null ? null : new NDArray[] {sharedGateUpT, sharedDownT});
    }

    private GroupedExperts requireExperts() {
        GroupedExperts e = experts;
        if (e == null) {
            throw new IllegalStateException("the routed experts of this layer are not loaded in this process: they"
                    + " are served by expert actors");
        }
        return e;
    }

    /**
     * The router's decision for {@code x}: its two score products in one engine call, their
     * (tokens, 2·N_r) result copied to Java, where the rest of the router's formula and the
     * selection take a few operations per score, fewer than the engine calls they would cost.
     * Counts each selection in {@link #loads()}. Releases its own temporaries.
     *
     * @param x (tokens, hidden)
     */
    public Routing route(NDArray x) {
        int tokens = Math.toIntExact(x.getShape().get(0));
        float[] scores;
        try (NDArray cg = x.matMul(routerT)) { // (T, 2·N_r): classifier scores, then gate scores
            scores = cg.toFloatArray();
        }
        float[] probs = probabilities(scores, tokens, moe.routed());
        Routing routing = Routing.select(probs, tokens, moe.active(), bias, scale);
        for (int j = 0; j < moe.routed(); j++) {
            int n = routing.rows(j).length;
            if (n > 0) {
                loads.addAndGet(j, n);
            }
        }
        return routing;
    }

    /**
     * s' = softmax(|c ⊙ SiLU(g)|) per token, in double precision, from the rows [c | g] of
     * {@code scores} (tokens, 2·N_r).
     */
    static float[] probabilities(float[] scores, int tokens, int routed) {
        float[] probs = new float[tokens * routed];
        double[] s = new double[routed];
        for (int t = 0; t < tokens; t++) {
            int row = 2 * t * routed;
            double max = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < routed; j++) {
                double g = scores[row + routed + j];
                s[j] = Math.abs(scores[row + j] * g / (1 + Math.exp(-g)));
                max = Math.max(max, s[j]);
            }
            double sum = 0;
            for (int j = 0; j < routed; j++) {
                s[j] = Math.exp(s[j] - max);
                sum += s[j];
            }
            for (int j = 0; j < routed; j++) {
                probs[t * routed + j] = (float) (s[j] / sum);
            }
        }
        return probs;
    }

    /**
     * Routed expert {@code j}'s SwiGLU, unweighted. rows: (n, hidden) → (n, hidden).
     *
     * @throws IllegalStateException after {@link #releaseRoutedExperts()}
     */
    public NDArray expert(int j, NDArray rows) {
        return requireExperts().expert(j, rows);
    }

    /**
     * Frees the routed experts' weights, keeping the router, the shared expert and
     * {@link #combine}: when expert actors hold the routed experts, the copy here would only
     * double the largest part of the model's memory. {@link #expert} and {@link #forward} fail
     * afterwards. Idempotent.
     */
    public synchronized void releaseRoutedExperts() {
        GroupedExperts e = experts;
        if (e != null) {
            experts = null;
            e.close();
        }
    }

    /** The shared expert's output (weight 1), zeros when the model has none. x: (T, hidden) → (T, hidden). */
    public NDArray shared(NDArray x) {
        if (sharedGateUpT == null) {
            return x.getManager().zeros(x.getShape(), x.getDataType());
        }
        return Ops.fusedSwiglu(x, sharedGateUpT, sharedDownT, kernels);
    }

    /**
     * Σ over each token's slots of g · expert output, as the in-process {@link #forward} combines.
     * {@code outputs[j]} holds expert j's unweighted output for {@link Routing#rows(int)} j (null
     * when it has none).
     *
     * @return (tokens, hidden)
     */
    public NDArray combine(Routing routing, NDArray[] outputs) {
        NDList used = new NDList();
        for (NDArray o : outputs) {
            if (o != null) {
                used.add(o);
            }
        }
        if (used.isEmpty()) {
            throw new IllegalArgumentException("no expert output to combine");
        }
        NDArray stacked = used.size() == 1 ? used.head() : NDArrays.concat(used);
        return combineStacked(routing, stacked);
    }

    /**
     * {@link #combine} over the used experts' outputs already stacked in expert order (each
     * expert's rows in its routing order): one array for the whole step, as a gather of expert
     * actors' answers builds it.
     *
     * @param stacked (routed rows, hidden)
     * @return (tokens, hidden)
     */
    public NDArray combineStacked(Routing routing, NDArray stacked) {
        return GroupedExperts.combineStacked(stacked.getManager(), routing, stacked);
    }

    public MoeConfig config() {
        return moe;
    }

    /** u (a copy). */
    public float[] scale() {
        return scale.clone();
    }

    /** b (a copy). */
    public float[] bias() {
        return bias.clone();
    }

    /** Replaces b; selection changes, output weights do not. Safe against concurrent {@link #route}. */
    public void setBias(float[] bias) {
        if (bias.length != moe.routed()) {
            throw new IllegalArgumentException("bias has " + bias.length + " values, expected " + moe.routed());
        }
        this.bias = bias.clone();
    }

    /** Tokens routed to each expert since the last {@link #resetLoads()}. */
    public long[] loads() {
        long[] out = new long[loads.length()];
        for (int j = 0; j < out.length; j++) {
            out[j] = loads.get(j);
        }
        return out;
    }

    public void resetLoads() {
        for (int j = 0; j < loads.length(); j++) {
            loads.set(j, 0);
        }
    }

    @Override
    public synchronized void close() {
        if (sharedGateUpT != null) {
            sharedGateUpT.close();
            sharedDownT.close();
        }
        releaseRoutedExperts();
        routerT.close();
    }
}
