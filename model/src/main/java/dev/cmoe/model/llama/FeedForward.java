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

    /** Releases the block's weights. */
    @Override
    void close();
}
