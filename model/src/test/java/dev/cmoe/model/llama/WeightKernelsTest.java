package dev.cmoe.model.llama;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.RawTensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Weights load from their stored bytes into the dtype they are computed in, exactly where the
 * dtypes allow it, and each dtype's projection computes what its rounding says it should.
 */
class WeightKernelsTest {

    /** A source of one tensor stored as {@code dtype} with the given raw 16- or 32-bit patterns. */
    private static TensorSource stored(DType dtype, int[] bits) {
        return new TensorSource() {
            @Override
            public FloatBuffer read(String name, long... shape) {
                throw new AssertionError("the loader must read the stored bytes, not float32 values");
            }

            @Override
            public RawTensor raw(String name, long... shape) {
                ByteBuffer b = ByteBuffer.allocateDirect(bits.length * dtype.byteSize()).order(ByteOrder.LITTLE_ENDIAN);
                for (int v : bits) {
                    if (dtype == DType.F32) {
                        b.putInt(v);
                    } else {
                        b.putShort((short) v);
                    }
                }
                b.flip();
                return new RawTensor(name, dtype, shape, b, true);
            }
        };
    }

    /** Every finite bf16 value: 65,536 patterns less the 510 infinities and NaNs. */
    private static int[] finiteBf16Patterns() {
        int[] all = new int[65536];
        int n = 0;
        for (int b = 0; b < 65536; b++) {
            if (Float.isFinite(Float.intBitsToFloat(b << 16))) {
                all[n++] = b;
            }
        }
        return java.util.Arrays.copyOf(all, n);
    }

    @Test
    void everyFiniteBf16ValueSurvivesLoadingAsBf16AndAsF32Exactly() {
        int[] bits = finiteBf16Patterns();
        try (NDManager m = NDManager.newBaseManager()) {
            for (DType target : new DType[] {DType.BF16, DType.F32}) {
                WeightKernels k = WeightKernels.of(target);
                NDArray w = k.load(m, stored(DType.BF16, bits), "w", bits.length);
                float[] back = k.toF32(w).toFloatArray();
                for (int i = 0; i < bits.length; i++) {
                    assertEquals(Float.floatToRawIntBits(Float.intBitsToFloat(bits[i] << 16)),
                            Float.floatToRawIntBits(back[i]), target + ": bf16 pattern 0x" + Integer.toHexString(bits[i]));
                }
            }
        }
    }

    @Test
    void narrowingFloat32ToBf16RoundsToNearestEven() {
        Random r = new Random(7);
        int[] bits = new int[4096];
        for (int i = 0; i < bits.length; i++) {
            bits[i] = Float.floatToRawIntBits((float) (r.nextGaussian() * Math.pow(10, r.nextInt(9) - 4)));
        }
        bits[0] = 0x3F808000; // exactly halfway between two bf16 values, even below: rounds down
        bits[1] = 0x3F818000; // halfway, odd below: rounds up
        try (NDManager m = NDManager.newBaseManager()) {
            WeightKernels k = WeightKernels.of(DType.BF16);
            float[] got = k.toF32(k.load(m, stored(DType.F32, bits), "w", bits.length)).toFloatArray();
            for (int i = 0; i < bits.length; i++) {
                int b = bits[i];
                int rounded = (b + 0x7FFF + ((b >>> 16) & 1)) & 0xFFFF0000;
                assertEquals(rounded, Float.floatToRawIntBits(got[i]), "float bits 0x" + Integer.toHexString(b));
            }
        }
    }

    @Test
    void f16WeightsStayF16AndBeyondItsRangeAreRefused() {
        int[] halves = {Float.floatToFloat16(1.5f), Float.floatToFloat16(-65504f), Float.floatToFloat16(6e-8f)};
        try (NDManager m = NDManager.newBaseManager()) {
            WeightKernels k = WeightKernels.of(DType.F16);
            float[] back = k.toF32(k.load(m, stored(DType.F16, halves), "w", 3)).toFloatArray();
            for (int i = 0; i < halves.length; i++) {
                assertEquals(Float.float16ToFloat((short) halves[i]), back[i]);
            }
            int[] big = {Float.floatToRawIntBits(1e5f)};
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> k.load(m, stored(DType.F32, big), "model.layers.0.mlp.up_proj.weight", 1));
            assertTrue(e.getMessage().contains("model.layers.0.mlp.up_proj.weight")
                    && e.getMessage().contains("float16"), e.getMessage());
        }
    }

    @Test
    void eachDtypesProjectionIsTheProductOfItsRoundedInputsRoundedOnce() {
        int in = 96;
        int out = 40;
        int rows = 3;
        Random r = new Random(11);
        float[] w = new float[out * in];
        float[] x = new float[rows * in];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) r.nextGaussian() * 0.1f;
        }
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        try (NDManager m = NDManager.newBaseManager()) {
            for (DType dtype : DType.values()) {
                WeightKernels k = WeightKernels.of(dtype);
                int[] bits = new int[w.length];
                for (int i = 0; i < w.length; i++) {
                    bits[i] = Float.floatToRawIntBits(w[i]);
                }
                NDArray wT = Tensors.transposedView(k.load(m, stored(DType.F32, bits), "w", out, in));
                float[] y = k.project(m.create(x, new Shape(rows, in)), wT).toFloatArray();
                float[] wr = k.toF32(wT.transpose()).toFloatArray();
                double bound = switch (dtype) {
                    case F32 -> 1e-5;
                    case F16 -> 2e-3;  // output rounded to 11 bits
                    case BF16 -> 8e-3; // output rounded to 8 bits
                };
                for (int t = 0; t < rows; t++) {
                    for (int o = 0; o < out; o++) {
                        double ref = 0;
                        double mag = 0;
                        for (int i = 0; i < in; i++) {
                            double xi = round(x[t * in + i], dtype);
                            ref += xi * wr[o * in + i];
                            mag += Math.abs(xi * wr[o * in + i]);
                        }
                        assertEquals(ref, y[t * out + o], bound * Math.max(Math.abs(ref), 1e-3 * mag),
                                dtype + " row " + t + " out " + o);
                    }
                }
            }
        }
    }

    /** The input rounded to {@code dtype} as the projection casts it. */
    private static double round(float v, DType dtype) {
        return switch (dtype) {
            case F32 -> v;
            case F16 -> Float.float16ToFloat(Float.floatToFloat16(v));
            case BF16 -> {
                int b = Float.floatToRawIntBits(v);
                yield Float.intBitsToFloat((b + 0x7FFF + ((b >>> 16) & 1)) & 0xFFFF0000);
            }
        };
    }

    @Test
    void embeddingRowsComeOutInFloat32InEveryDtype() {
        int[] bits = new int[6 * 4];
        for (int i = 0; i < bits.length; i++) {
            bits[i] = Float.floatToRawIntBits(i * 0.25f) >>> 16; // exact in bf16
        }
        try (NDManager m = NDManager.newBaseManager()) {
            for (DType dtype : DType.values()) {
                WeightKernels k = WeightKernels.of(dtype);
                NDArray table = k.load(m, stored(DType.BF16, bits), "embed", 6, 4);
                float[] got = k.rows(table, m.create(new int[] {5, 0, 2})).toFloatArray();
                float[] want = new float[12];
                int[] ids = {5, 0, 2};
                for (int r = 0; r < 3; r++) {
                    for (int c = 0; c < 4; c++) {
                        want[r * 4 + c] = (ids[r] * 4 + c) * 0.25f;
                    }
                }
                org.junit.jupiter.api.Assertions.assertArrayEquals(want, got, dtype.name());
            }
        }
    }

    @Test
    void everyDtypeComputesItsProbeOnTheCpu() {
        try (NDManager m = NDManager.newBaseManager()) {
            for (DType d : DType.values()) {
                WeightKernels.of(d).checkComputes(m); // throws, naming the device and dtype, where it cannot
            }
        }
    }
}
