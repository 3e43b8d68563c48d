package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;

/**
 * The replaceable FFN block of a decoder layer. The dense SwiGLU is one implementation; the
 * carved Mixture-of-Experts (in-process or dispatched to expert actors) is another, which is how
 * one transformer serves dense and carved checkpoints alike.
 */
public interface FeedForward extends AutoCloseable {

    /**
     * Maps the post-attention-normalised hidden states of every token in the step to the FFN
     * output. Implementations must not close {@code x}; arrays they create are released by the
     * caller's {@link ai.djl.ndarray.NDScope}.
     *
     * @param x (tokens, hidden)
     * @return (tokens, hidden)
     */
    NDArray forward(NDArray x);

    /**
     * {@code residual + forward(x)}: the layer's FFN half with its residual. A cached step of a
     * scripted layer calls this with the layer's script, so that a block which can run as that
     * script's methods does so in a few engine calls; this default ignores it.
     */
    default NDArray addTo(NDArray residual, NDArray x, LayerScript script) {
        return residual.add(forward(x));
    }

    /** Releases the block's weights. */
    @Override
    void close();
}
