package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.nio.FloatBuffer;

/** Small NDArray helpers for moving weights between Java buffers and the engine safely. */
public final class Tensors {
    private Tensors() {
    }

    /**
     * Copies {@code data} into an engine-owned tensor. DJL shares (does not copy) the memory of a
     * direct ByteBuffer, which would tie the tensor to a memory-mapped file or to Java's direct
     * memory limit; a FloatBuffer is copied, and the duplicate moves it into the engine's allocator.
     */
    public static NDArray create(NDManager manager, FloatBuffer data, long... shape) {
        Shape s = new Shape(shape);
        if (data.remaining() != s.size()) {
            throw new IllegalArgumentException("tensor data has " + data.remaining() + " values, shape " + s
                    + " needs " + s.size());
        }
        try (NDArray staged = manager.create(data.duplicate(), s)) {
            return staged.duplicate();
        }
    }

    /** Reads tensor {@code name} of the given shape from {@code source} into {@code manager}. */
    public static NDArray load(NDManager manager, TensorSource source, String name, long... shape) {
        return create(manager, source.read(name, shape), shape);
    }

    /**
     * Returns the transpose of a 2-D weight as a view and drops the original handle, so linear
     * layers compute {@code x · Wᵀ} without copying: BLAS reads the transposed strides directly.
     */
    public static NDArray transposedView(NDArray w) {
        NDArray t = w.transpose();
        w.close();
        return t;
    }
}
