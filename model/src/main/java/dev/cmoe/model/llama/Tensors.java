package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.safetensors.RawTensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/** Small NDArray helpers for moving weights between Java buffers and the engine safely. */
public final class Tensors {
    private Tensors() {
    }

    /**
     * Copies {@code data} into an engine-owned tensor. DJL shares (does not copy) the memory of a
     * direct buffer, and stages a heap buffer in a direct buffer of its own that only a garbage
     * collection frees, so large tensors made from Java arrays pile up in direct memory between
     * collections (gigabytes when carving a 7B model). Here the staging buffer is ours: the
     * duplicate moves the values into the engine's allocator and the buffer is freed at once.
     */
    public static NDArray create(NDManager manager, FloatBuffer data, long... shape) {
        Shape s = new Shape(shape);
        if (data.remaining() != s.size()) {
            throw new IllegalArgumentException("tensor data has " + data.remaining() + " values, shape " + s
                    + " needs " + s.size());
        }
        ByteBuffer staging = ByteBuffer.allocateDirect(Math.multiplyExact(data.remaining(), Float.BYTES))
                .order(ByteOrder.LITTLE_ENDIAN);
        try {
            staging.asFloatBuffer().put(data.duplicate());
            try (NDArray staged = manager.create(staging, s, DataType.FLOAT32)) {
                return staged.duplicate();
            }
        } finally {
            RawTensor.free(staging);
        }
    }

    /** As {@link #create(NDManager, FloatBuffer, long...)}, from a whole array. */
    public static NDArray create(NDManager manager, float[] data, long... shape) {
        return create(manager, FloatBuffer.wrap(data), shape);
    }

    /**
     * Reads tensor {@code name} of the given shape from {@code source} into {@code manager} as
     * float32, and refuses it unless every value is finite: a NaN or infinity in a weight would
     * otherwise load silently and turn every output into NaN (or every sampled token into 0).
     *
     * @throws IllegalArgumentException naming the tensor and how many values are NaN or infinite
     */
    public static NDArray load(NDManager manager, TensorSource source, String name, long... shape) {
        return WeightKernels.f32().load(manager, source, name, shape);
    }

    /**
     * Checks that {@code t} holds only finite values with one engine reduction: the sum of a
     * tensor is finite exactly when no value is NaN or infinite, unless finite values overflow
     * float32 together, which only the (rare) slow path below tells apart.
     */
    static void requireFinite(NDArray t, String name) {
        if (t.size() == 0) {
            return;
        }
        try (NDArray sum = t.sum()) {
            if (Float.isFinite(sum.getFloat())) {
                return;
            }
        }
        long nan;
        long inf;
        try (NDArray isNan = t.isNaN(); NDArray nanCount = isNan.sum();
             NDArray isInf = t.isInfinite(); NDArray infCount = isInf.sum()) {
            nan = nanCount.toType(ai.djl.ndarray.types.DataType.INT64, false).getLong();
            inf = infCount.toType(ai.djl.ndarray.types.DataType.INT64, false).getLong();
        }
        if (nan > 0 || inf > 0) {
            throw new IllegalArgumentException("tensor '" + name + "' holds " + nan + " NaN and " + inf
                    + " infinite values (of " + t.size() + "): the checkpoint is corrupt");
        }
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
