package dev.cmoe.deploy.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.moe.Routing;
import java.util.Arrays;
import java.util.function.UnaryOperator;

/**
 * The in-process MoE forward as it was before experts were grouped, kept as the yardstick that
 * {@code bench-engine --per-expert} measures the grouped one against: per selected expert one
 * gather and a SwiGLU of three separate projections, the shared expert likewise, then
 * {@link MoeFeedForward#combine}; its router computes the probabilities on the engine (two
 * products, SiLU, product, |·|, softmax) and selects as {@link Routing#select} does, with the
 * grouped layer's bias and scale.
 */
public final class PerExpertMoe implements FeedForward {
    private final MoeFeedForward router; // for combine
    private final NDArray classifierT;   // (hidden, N_r)
    private final NDArray routerGateT;   // (hidden, N_r)
    private final float[] bias;
    private final float[] scale;
    private final int active;
    private final WeightKernels kernels;
    private final NDArray[][] expert; // per routed expert {gateT, upT, downT}
    private final NDArray[] shared;   // {gateT, upT, downT}, null without a shared expert

    private PerExpertMoe(MoeFeedForward router, NDArray classifierT, NDArray routerGateT, WeightKernels kernels,
                         NDArray[][] expert, NDArray[] shared) {
        this.router = router;
        this.classifierT = classifierT;
        this.routerGateT = routerGateT;
        this.bias = router.bias();
        this.scale = router.scale();
        this.active = router.config().active();
        this.kernels = kernels;
        this.expert = expert;
        this.shared = shared;
    }

    /** Loads layer {@code layer}'s experts a second time, one tensor per projection, beside {@code router}. */
    public static PerExpertMoe load(NDManager manager, TensorSource source, int layer, int hidden, MoeConfig moe,
                                    WeightKernels kernels, MoeFeedForward router) {
        int m = moe.expertSize();
        NDArray[][] expert = new NDArray[moe.routed()][];
        for (int j = 0; j < expert.length; j++) {
            int e = j;
            expert[j] = swiglu(manager, source, kernels, hidden, m, n -> MoeWeightNames.expert(layer, e, n));
        }
        NDArray[] shared = moe.shared() == 0 ? null
                : swiglu(manager, source, kernels, hidden, moe.sharedSize(), n -> MoeWeightNames.shared(layer, n));
        NDArray classifierT = Tensors.transposedView(Tensors.load(manager, source,
                MoeWeightNames.routerClassifier(layer), moe.routed(), hidden));
        NDArray routerGateT = Tensors.transposedView(Tensors.load(manager, source, MoeWeightNames.routerGate(layer),
                moe.routed(), hidden));
        return new PerExpertMoe(router, classifierT, routerGateT, kernels, expert, shared);
    }

    /** {gateT, upT, downT} of one SwiGLU of {@code size} neurons; {@code name} maps a projection to its tensor. */
    private static NDArray[] swiglu(NDManager manager, TensorSource source, WeightKernels kernels, int hidden,
                                    int size, UnaryOperator<String> name) {
        return new NDArray[] {
            Tensors.transposedView(kernels.load(manager, source, name.apply(MoeWeightNames.GATE), size, hidden)),
            Tensors.transposedView(kernels.load(manager, source, name.apply(MoeWeightNames.UP), size, hidden)),
            Tensors.transposedView(kernels.load(manager, source, name.apply(MoeWeightNames.DOWN), hidden, size))};
    }

    @Override
    public NDArray forward(NDArray x) {
        float[] probs = x.matMul(classifierT).mul(Ops.silu(x.matMul(routerGateT))).abs().softmax(-1).toFloatArray();
        Routing routing = Routing.select(probs, Math.toIntExact(x.getShape().get(0)), active, bias, scale);
        NDArray[] outputs = new NDArray[expert.length];
        for (int j = 0; j < outputs.length; j++) {
            int[] rows = routing.rows(j);
            if (rows.length > 0) {
                long[] ids = Arrays.stream(rows).asLongStream().toArray();
                outputs[j] = Ops.swiglu(x.get(new NDIndex("{}", x.getManager().create(ids))), expert[j][0],
                        expert[j][1], expert[j][2], kernels);
            }
        }
        NDArray routed = router.combine(routing, outputs);
        return shared == null ? routed : Ops.swiglu(x, shared[0], shared[1], shared[2], kernels).add(routed);
    }

    @Override
    public void close() {
        classifierT.close();
        routerGateT.close();
        for (NDArray[] e : expert) {
            Arrays.stream(e).forEach(NDArray::close);
        }
        if (shared != null) {
            Arrays.stream(shared).forEach(NDArray::close);
        }
    }
}
