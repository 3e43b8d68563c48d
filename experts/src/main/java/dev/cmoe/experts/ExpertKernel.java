package dev.cmoe.experts;

import ai.djl.ndarray.NDArray;

/**
 * What one routed expert computes on its device, apart from the actor that owns it: the
 * device's {@link DeviceCompute} runs every expert of a step through this, one after another,
 * without a message per expert. Implementations hold engine memory until {@link #close}.
 */
public interface ExpertKernel extends AutoCloseable {
    /**
     * The expert's unweighted output for float32 rows {@code x} (n, hidden): (n, hidden) float32,
     * made in {@code x}'s manager.
     */
    NDArray apply(NDArray x);

    /**
     * Its fused gate/up weight (hidden, 2m) and its down weight (m, hidden), both transposed, so
     * that a device can run several experts' rows in one engine call; null when it has no such
     * weights (then only {@link #apply} computes it).
     */
    default NDArray[] weights() {
        return null;
    }

    /** Releases the expert's engine memory; idempotent. */
    @Override
    void close();
}
