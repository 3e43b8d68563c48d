package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.RawTensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;
import java.util.Objects;

/**
 * How the weights of one dtype are loaded and multiplied: the one place that knows each dtype's
 * engine calls. Weights are held in that dtype (float32, float16 or bfloat16); activations are
 * float32 everywhere, so norms, softmax, rotary, router scores, the residual stream and logits
 * accumulate in float32 and a projection casts its input to the weights' dtype, multiplies there
 * and returns float32.
 */
public final class WeightKernels {
    private static final WeightKernels F32 = new WeightKernels(DType.F32);
    private static final WeightKernels F16 = new WeightKernels(DType.F16);
    private static final WeightKernels BF16 = new WeightKernels(DType.BF16);

    private final DType dtype;

    private WeightKernels(DType dtype) {
        this.dtype = dtype;
    }

    /** The kernels that hold weights in {@code dtype}. */
    public static WeightKernels of(DType dtype) {
        return switch (Objects.requireNonNull(dtype, "dtype")) {
            case F32 -> F32;
            case F16 -> F16;
            case BF16 -> BF16;
        };
    }

    /** float32 weights: what training, carving and the small tensors (norms, biases, routers) use. */
    public static WeightKernels f32() {
        return F32;
    }

    public DType dtype() {
        return dtype;
    }

    /**
     * Loads tensor {@code name} of {@code shape} from {@code source} into {@code manager} in this
     * dtype, from the bytes at the dtype they are stored in: no float32 staging copy unless the
     * stored dtype is bfloat16 (which the engine can only create by narrowing float32), and the
     * file mapping released before returning. Non-finite values are refused.
     *
     * @throws IllegalArgumentException naming the tensor and how many values are NaN or infinite
     */
    public NDArray load(NDManager manager, TensorSource source, String name, long... shape) {
        RawTensor raw = source.raw(name, shape);
        ByteBuffer staging = null;
        try {
            Shape s = new Shape(shape);
            if (raw.numel() != s.size()) {
                throw new IllegalArgumentException("tensor '" + name + "' has " + raw.numel() + " values, shape " + s
                        + " needs " + s.size());
            }
            NDArray stored;
            if (raw.dtype() == DType.BF16) {
                staging = widenBf16(raw);
                stored = manager.create(staging, s, DataType.FLOAT32);
            } else {
                // DJL aliases a direct buffer: the engine reads the mapping until the copies below
                stored = manager.create(raw.bytes(), s, raw.dtype() == DType.F32 ? DataType.FLOAT32 : DataType.FLOAT16);
            }
            try {
                return convert(stored, raw.dtype(), name);
            } finally {
                stored.close();
            }
        } finally {
            raw.release();
            if (staging != null) {
                RawTensor.free(staging);
            }
        }
    }

    /** An engine-owned copy of {@code stored} (held as {@code from}, or float32 when that is bf16) in this dtype. */
    private NDArray convert(NDArray stored, DType from, String name) {
        if (from != DType.F16) {
            Tensors.requireFinite(stored, name); // float32 here: the stored values, or bf16 widened exactly
            return switch (dtype) {
                case F32 -> stored.duplicate();
                case F16 -> requireF16Range(stored.toType(DataType.FLOAT16, true), name);
                case BF16 -> Bf16Script.get().narrow(stored);
            };
        }
        NDArray wide = stored.toType(DataType.FLOAT32, true);
        try {
            Tensors.requireFinite(wide, name);
            switch (dtype) {
                case F32 -> {
                    NDArray kept = wide;
                    wide = null;
                    return kept;
                }
                case F16 -> {
                    return stored.duplicate();
                }
                default -> {
                    return Bf16Script.get().narrow(wide);
                }
            }
        } finally {
            if (wide != null) {
                wide.close();
            }
        }
    }

    /** Values beyond float16's range would become infinite; refuse instead of computing with them. */
    private static NDArray requireF16Range(NDArray half, String name) {
        try (NDArray wide = half.toType(DataType.FLOAT32, false)) {
            Tensors.requireFinite(wide, name + " (narrowed to float16)");
        } catch (RuntimeException e) {
            half.close();
            throw e;
        }
        return half;
    }

    /** bf16 is the top half of a float32, so widening is exact: the bits shifted back up. */
    private static ByteBuffer widenBf16(RawTensor raw) {
        long n = raw.numel();
        if (n * Float.BYTES > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("tensor '" + raw.name() + "' has " + n
                    + " values: too large to widen in one buffer");
        }
        ByteBuffer out = ByteBuffer.allocateDirect((int) (n * Float.BYTES)).order(ByteOrder.LITTLE_ENDIAN);
        ShortBuffer src = raw.bytes().asShortBuffer();
        FloatBuffer dst = out.asFloatBuffer();
        for (int i = 0; i < n; i++) {
            dst.put(i, Float.intBitsToFloat(src.get(i) << 16));
        }
        return out;
    }

    /**
     * {@code x · wT} in float32 for float32 {@code x} (…, in) and weights {@code wT} (in, out) in
     * this dtype, typically a transposed view that BLAS reads in place.
     */
    public NDArray project(NDArray x, NDArray wT) {
        return switch (dtype) {
            case F32 -> x.matMul(wT);
            case F16 -> {
                try (NDArray xh = x.toType(DataType.FLOAT16, false); NDArray yh = xh.matMul(wT)) {
                    yield yh.toType(DataType.FLOAT32, false);
                }
            }
            case BF16 -> Bf16Script.get().linear(x, wT);
        };
    }

    /** Rows {@code ids} (1-D, integer) of a table held in this dtype, in float32: an embedding lookup. */
    public NDArray rows(NDArray table, NDArray ids) {
        return switch (dtype) {
            case F32 -> table.get(new NDIndex("{}", ids));
            case F16 -> {
                try (NDArray h = table.get(new NDIndex("{}", ids))) {
                    yield h.toType(DataType.FLOAT32, false);
                }
            }
            case BF16 -> {
                if (ids.getDataType() == DataType.INT64) {
                    yield Bf16Script.get().rows(table, ids);
                }
                try (NDArray longs = ids.toType(DataType.INT64, false)) {
                    yield Bf16Script.get().rows(table, longs);
                }
            }
        };
    }

    /**
     * Weights {@code parts} held in this dtype, joined along {@code axis} into one engine-owned
     * tensor (for stacking experts or fusing projections at load); the parts stay open.
     */
    public NDArray concat(NDArray[] parts, int axis) {
        if (parts.length == 0) {
            throw new IllegalArgumentException("nothing to concatenate");
        }
        return switch (dtype) {
            case F32, F16 -> NDArrays.concat(new NDList(parts), axis);
            case BF16 -> Bf16Script.get().cat(parts, axis);
        };
    }

    /** A float32 copy of a weight held in this dtype. */
    public NDArray toF32(NDArray w) {
        return switch (dtype) {
            case F32 -> w.duplicate();
            case F16 -> w.toType(DataType.FLOAT32, true);
            case BF16 -> Bf16Script.get().widen(w);
        };
    }

    /**
     * Runs one small projection in this dtype on {@code manager}'s device and checks its result,
     * so that a device which cannot compute the dtype (or computes it wrongly) is named when the
     * weights are loaded rather than at the first request.
     *
     * @throws IllegalArgumentException naming the device and the dtype, with the engine's reason
     */
    public void checkComputes(NDManager manager) {
        String what = "device " + manager.getDevice() + " cannot compute " + dtype.shortName() + " projections";
        float got;
        try (NDManager m = manager.newSubManager()) {
            // (1, 2)·(2, 2)ᵀ with small integers: exact in every dtype, so any difference is a fault
            NDArray w = convert(m.create(new float[] {1, 2, 3, 4}, new Shape(2, 2)), DType.F32, "probe");
            NDArray y = project(m.create(new float[] {1, -1}, new Shape(1, 2)), Tensors.transposedView(w));
            float[] out = y.toFloatArray();
            got = out[0] + 10 * out[1];
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(what + ": " + e.getMessage(), e);
        }
        if (got != -11f) { // y = (1−2, 3−4) = (−1, −1)
            throw new IllegalArgumentException(what + ": a test product came out wrong");
        }
    }

    @Override
    public String toString() {
        return "WeightKernels[" + dtype.shortName() + "]";
    }
}
