package dev.cmoe.deploy.bench;

import ai.djl.ndarray.NDArray;
import dev.cmoe.experts.ExpertKernel;

/**
 * An expert that answers its rows unchanged: what {@code cmoe bench-dispatch} serves so that a
 * layer's round trip measures dispatch alone (messages, frames, actor hops), not expert compute.
 */
final class NoOpExpert implements ExpertKernel {
    @Override
    public NDArray apply(NDArray x) {
        return x.duplicate();
    }

    @Override
    public void close() {
        // holds no engine memory of its own
    }
}
