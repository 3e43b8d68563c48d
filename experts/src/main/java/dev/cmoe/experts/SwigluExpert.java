package dev.cmoe.experts;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.moe.MoeWeightNames;

/**
 * A carved routed expert's SwiGLU, its gate/up/down weights read from the checkpoint onto one
 * device in the kernels' dtype, gate and up fused into one block as the single-node model holds
 * them: the same products as the in-process experts, so its outputs agree with theirs wherever
 * it runs.
 */
public final class SwigluExpert implements ExpertKernel {
    private final NDManager manager;
    private final NDArray gateUpT; // (hidden, 2m): [gate; up] transposed
    private final NDArray downT;   // (m, hidden)
    private final WeightKernels kernels;

    private SwigluExpert(NDManager manager, NDArray gateUpT, NDArray downT, WeightKernels kernels) {
        this.manager = manager;
        this.gateUpT = gateUpT;
        this.downT = downT;
        this.kernels = kernels;
    }

    /**
     * Loads expert {@code id}'s weights from {@code source}; nothing half-loaded survives a failure.
     *
     * @param hidden d, the model's hidden size
     * @param expertSize m, neurons per expert
     */
    public static SwigluExpert load(ExpertId id, int hidden, int expertSize, TensorSource source, Device device,
                                    WeightKernels kernels) {
        NDManager manager = NDManager.newBaseManager(device);
        try {
            int l = id.layer();
            int j = id.expert();
            NDArray gateUpT;
            try (NDArray gate = kernels.load(manager, source, MoeWeightNames.expert(l, j, MoeWeightNames.GATE),
                    expertSize, hidden);
                 NDArray up = kernels.load(manager, source, MoeWeightNames.expert(l, j, MoeWeightNames.UP),
                         expertSize, hidden)) {
                gateUpT = Tensors.transposedView(kernels.concat(new NDArray[] {gate, up}, 0));
            }
            NDArray downT = Tensors.transposedView(kernels.load(manager, source,
                    MoeWeightNames.expert(l, j, MoeWeightNames.DOWN), hidden, expertSize));
            return new SwigluExpert(manager, gateUpT, downT, kernels);
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    @Override
    public NDArray apply(NDArray x) {
        return Ops.fusedSwiglu(x, gateUpT, downT, kernels);
    }

    @Override
    public NDArray[] weights() {
        return new NDArray[] {gateUpT, downT};
    }

    @Override
    public void close() {
        manager.close();
    }
}
