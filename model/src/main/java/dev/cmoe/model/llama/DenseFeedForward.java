package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import dev.cmoe.model.arch.TensorNames;

/**
 * The dense LLaMA SwiGLU FFN: {@code y = W_down(SiLU(W_gate x) ⊙ W_up x)}; the block that
 * carving splits into experts.
 */
public final class DenseFeedForward implements FeedForward {
    private final Linear gate; // hidden → intermediate
    private final Linear up;   // hidden → intermediate
    private final Linear down; // intermediate → hidden

    public DenseFeedForward(Linear gate, Linear up, Linear down) {
        this.gate = gate;
        this.up = up;
        this.down = down;
    }

    /** Loads layer {@code layer}'s FFN weights, as {@code weights} makes them. */
    public static DenseFeedForward load(DecoderWeights weights, int layer, int hidden, int intermediate) {
        return new DenseFeedForward(
                weights.linear(TensorNames.weight(layer, TensorNames.GATE), null, intermediate, hidden),
                weights.linear(TensorNames.weight(layer, TensorNames.UP), null, intermediate, hidden),
                weights.linear(TensorNames.weight(layer, TensorNames.DOWN), null, hidden, intermediate));
    }

    /** Gate, up and down, for a caller that runs the same block in fewer engine calls. */
    Linear[] projections() {
        return new Linear[] {gate, up, down};
    }

    @Override
    public NDArray forward(NDArray x) {
        return down.apply(Ops.silu(gate.apply(x)).mul(up.apply(x)));
    }

    @Override
    public void close() {
        gate.close();
        up.close();
        down.close();
    }
}
