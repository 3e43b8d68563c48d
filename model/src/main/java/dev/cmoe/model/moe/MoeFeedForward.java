package dev.cmoe.model.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.FeedForward;
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
 * {@link #shared} and {@link #combine} are each usable on their own.
 *
 * <pre>
 * s  = |(x·classifierᵀ) ⊙ SiLU(x·gateᵀ)|          (T, N_r)
 * s' = softmax(s) over experts                    float32
 * selected = top-N_k of (s' + b)                  b changes selection only
 * out = shared(x) + Σ_selected (1 + s'_j·u_j) · expert_j(x)
 * </pre>
 */
public final class MoeFeedForward implements FeedForward {
    private final MoeConfig moe;
    private final WeightKernels kernels; // the experts' dtype; the router is float32
    private final NDArray sharedGateT;  // (hidden, N_s·m), null when N_s = 0
    private final NDArray sharedUpT;    // (hidden, N_s·m)
    private final NDArray sharedDownT;  // (N_s·m, hidden)
    private final NDArray[] gateT;      // per routed expert (hidden, m)
    private final NDArray[] upT;        // per routed expert (hidden, m)
    private final NDArray[] downT;      // per routed expert (m, hidden)
    private final NDArray classifierT;  // (hidden, N_r)
    private final NDArray routerGateT;  // (hidden, N_r)
    private final float[] scale;        // (N_r) u
    private volatile float[] bias;      // (N_r) b, replaced whole by setBias
    private final AtomicLongArray loads; // (N_r) tokens routed to each expert since the last reset

    private MoeFeedForward(MoeConfig moe, WeightKernels kernels, NDArray[] shared, NDArray[] gate, NDArray[] up,
                           NDArray[] down, NDArray classifier, NDArray routerGate, float[] scale, float[] bias) {
        this.moe = moe;
        this.kernels = kernels;
        this.sharedGateT = shared == null ? null : Tensors.transposedView(shared[0]);
        this.sharedUpT = shared == null ? null : Tensors.transposedView(shared[1]);
        this.sharedDownT = shared == null ? null : Tensors.transposedView(shared[2]);
        int nRouted = moe.routed();
        this.gateT = new NDArray[nRouted];
        this.upT = new NDArray[nRouted];
        this.downT = new NDArray[nRouted];
        for (int j = 0; j < nRouted; j++) {
            if (gate[j] != null) {
                gateT[j] = Tensors.transposedView(gate[j]);
                upT[j] = Tensors.transposedView(up[j]);
                downT[j] = Tensors.transposedView(down[j]);
            }
        }
        this.classifierT = Tensors.transposedView(classifier);
        this.routerGateT = Tensors.transposedView(routerGate);
        this.scale = scale.clone();
        this.bias = bias.clone();
        this.loads = new AtomicLongArray(nRouted);
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
     * As {@link #load}, the experts held by {@code kernels}; without {@code routedExperts} no
     * routed expert tensor is read: the layer routes, runs its shared expert and combines, for a
     * server whose expert actors hold the rest.
     */
    public static MoeFeedForward load(NDManager manager, TensorSource source, int layer, ModelConfig config,
                                      MoeConfig moe, boolean routedExperts, WeightKernels kernels) {
        int d = config.hiddenSize();
        int m = moe.expertSize();
        int nRouted = moe.routed();
        NDArray[] shared = null;
        if (moe.shared() > 0) {
            int s = moe.sharedSize();
            shared = new NDArray[] {
                kernels.load(manager, source, MoeWeightNames.shared(layer, MoeWeightNames.GATE), s, d),
                kernels.load(manager, source, MoeWeightNames.shared(layer, MoeWeightNames.UP), s, d),
                kernels.load(manager, source, MoeWeightNames.shared(layer, MoeWeightNames.DOWN), d, s)};
        }
        NDArray[] gate = new NDArray[nRouted];
        NDArray[] up = new NDArray[nRouted];
        NDArray[] down = new NDArray[nRouted];
        for (int j = 0; routedExperts && j < nRouted; j++) {
            gate[j] = kernels.load(manager, source, MoeWeightNames.expert(layer, j, MoeWeightNames.GATE), m, d);
            up[j] = kernels.load(manager, source, MoeWeightNames.expert(layer, j, MoeWeightNames.UP), m, d);
            down[j] = kernels.load(manager, source, MoeWeightNames.expert(layer, j, MoeWeightNames.DOWN), d, m);
        }
        NDArray classifier = Tensors.load(manager, source, MoeWeightNames.routerClassifier(layer), nRouted, d);
        NDArray routerGate = Tensors.load(manager, source, MoeWeightNames.routerGate(layer), nRouted, d);
        float[] scale = floats(source.read(MoeWeightNames.routerScale(layer), nRouted));
        float[] bias = floats(source.read(MoeWeightNames.routerBias(layer), nRouted));
        return new MoeFeedForward(moe, kernels, shared, gate, up, down, classifier, routerGate, scale, bias);
    }

    private static long[] longs(int[] v) {
        long[] out = new long[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i];
        }
        return out;
    }

    private static float[] floats(FloatBuffer b) {
        float[] v = new float[b.remaining()];
        b.duplicate().get(v);
        return v;
    }

    @Override
    public NDArray forward(NDArray x) {
        Routing routing = route(x);
        NDArray[] outputs = new NDArray[moe.routed()];
        // one batched SwiGLU per expert over the rows routed to it, not a loop over tokens
        for (int j = 0; j < outputs.length; j++) {
            int[] rows = routing.rows(j);
            if (rows.length > 0) {
                outputs[j] = expert(j, x.get(new NDIndex("{}", x.getManager().create(longs(rows)))));
            }
        }
        NDArray routed = combine(routing, outputs);
        return sharedGateT == null ? routed : shared(x).add(routed);
    }

    /**
     * The router's decision for {@code x}: probabilities on the engine, selection in Java. Counts
     * each selection in {@link #loads()}. Releases its own temporaries.
     *
     * @param x (tokens, hidden)
     */
    public Routing route(NDArray x) {
        long tokens = x.getShape().get(0);
        float[] probs;
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            NDArray s = x.matMul(classifierT).mul(Ops.silu(x.matMul(routerGateT))).abs(); // (T, N_r)
            probs = s.softmax(-1).toFloatArray();
        }
        Routing routing = Routing.select(probs, Math.toIntExact(tokens), moe.active(), bias, scale);
        for (int j = 0; j < moe.routed(); j++) {
            int n = routing.rows(j).length;
            if (n > 0) {
                loads.addAndGet(j, n);
            }
        }
        return routing;
    }

    /**
     * Routed expert {@code j}'s SwiGLU, unweighted. rows: (n, hidden) → (n, hidden).
     *
     * @throws IllegalStateException after {@link #releaseRoutedExperts()}
     */
    public NDArray expert(int j, NDArray rows) {
        if (gateT[j] == null) {
            throw new IllegalStateException("routed expert " + j + " is not loaded in this process: it is served by "
                    + "expert actors");
        }
        return Ops.swiglu(rows, gateT[j], upT[j], downT[j], kernels);
    }

    /**
     * Frees the routed experts' weights, keeping the router, the shared expert and
     * {@link #combine}: when expert actors hold the routed experts, the copy here would only
     * double the largest part of the model's memory. {@link #expert} and {@link #forward} fail
     * afterwards. Idempotent.
     */
    public synchronized void releaseRoutedExperts() {
        for (int j = 0; j < gateT.length; j++) {
            if (gateT[j] != null) {
                gateT[j].close();
                upT[j].close();
                downT[j].close();
                gateT[j] = null;
                upT[j] = null;
                downT[j] = null;
            }
        }
    }

    /** The shared expert's output (weight 1), zeros when the model has none. x: (T, hidden) → (T, hidden). */
    public NDArray shared(NDArray x) {
        if (sharedGateT == null) {
            return x.getManager().zeros(x.getShape(), x.getDataType());
        }
        return Ops.swiglu(x, sharedGateT, sharedUpT, sharedDownT, kernels);
    }

    /**
     * Σ over each token's slots, in slot order, of g · expert output. {@code outputs[j]} holds
     * expert j's unweighted output for {@link Routing#rows(int)} j (null when it has none).
     * The rows of every expert are stacked, put back in (token, slot) order by one gather, and
     * summed over the N_k slots: an index-add without scatter, deterministic in its order.
     *
     * @return (tokens, hidden)
     */
    public NDArray combine(Routing routing, NDArray[] outputs) {
        int tokens = routing.tokens();
        int nActive = routing.nActive();
        NDList parts = new NDList();
        long[] position = new long[tokens * nActive]; // slot t·N_k + k → its row in the stack
        int at = 0;
        NDManager manager = null;
        for (int j = 0; j < outputs.length; j++) {
            int[] slots = routing.slots(j);
            if (slots.length == 0) {
                continue;
            }
            manager = outputs[j].getManager();
            NDArray g = manager.create(routing.gates(j), new Shape(slots.length, 1));
            parts.add(outputs[j].mul(g));
            for (int slot : slots) {
                position[slot] = at++;
            }
        }
        NDArray stacked = parts.size() == 1 ? parts.head() : NDArrays.concat(parts); // (T·N_k, hidden)
        long hidden = stacked.getShape().get(1);
        return stacked.get(new NDIndex("{}", manager.create(position)))
                .reshape(tokens, nActive, hidden).sum(new int[] {1});
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
        if (sharedGateT != null) {
            sharedGateT.close();
            sharedUpT.close();
            sharedDownT.close();
        }
        releaseRoutedExperts();
        classifierT.close();
        routerGateT.close();
    }
}
