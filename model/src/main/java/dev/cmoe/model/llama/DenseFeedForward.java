package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * The dense LLaMA SwiGLU FFN: {@code y = W_down(SiLU(W_gate x) ⊙ W_up x)}; the block that
 * carving splits into experts.
 */
public final class DenseFeedForward implements FeedForward {
    private final NDArray wGateT; // (hidden, intermediate)
    private final NDArray wUpT;   // (hidden, intermediate)
    private final NDArray wDownT; // (intermediate, hidden)

    /**
     * Takes ownership of the weights in Hugging Face layout.
     *
     * @param wGate (intermediate, hidden)
     * @param wUp (intermediate, hidden)
     * @param wDown (hidden, intermediate)
     */
    public DenseFeedForward(NDArray wGate, NDArray wUp, NDArray wDown) {
        this.wGateT = Tensors.transposedView(wGate);
        this.wUpT = Tensors.transposedView(wUp);
        this.wDownT = Tensors.transposedView(wDown);
    }

    /** Loads layer {@code layer}'s FFN weights from a checkpoint into {@code manager}. */
    public static DenseFeedForward load(NDManager manager, TensorSource source, int layer, int hidden, int intermediate) {
        String p = WeightNames.layer(layer) + "mlp.";
        return new DenseFeedForward(
                Tensors.load(manager, source, p + "gate_proj.weight", intermediate, hidden),
                Tensors.load(manager, source, p + "up_proj.weight", intermediate, hidden),
                Tensors.load(manager, source, p + "down_proj.weight", hidden, intermediate));
    }

    @Override
    public NDArray forward(NDArray x) {
        return Ops.swiglu(x, wGateT, wUpT, wDownT);
    }

    @Override
    public void close() {
        wGateT.close();
        wUpT.close();
        wDownT.close();
    }
}
