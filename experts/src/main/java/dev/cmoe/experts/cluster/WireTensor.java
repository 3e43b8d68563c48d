package dev.cmoe.experts.cluster;

import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;
import java.util.Objects;

/**
 * A (rows, cols) matrix of activations as it crosses between head and expert devices: its values
 * in the model's dtype, little-endian, so a bf16 model sends half the bytes of float32.
 *
 * <p>The narrowing is lossless for what the experts compute: a projection in bf16 or f16 casts
 * its float32 input to that dtype with round-to-nearest-even first ({@code WeightKernels.project}),
 * which is what {@link SafetensorsWriter#toBf16} and {@link Float#floatToFloat16} do here, and its
 * result is the dtype's product widened, which the dtype holds exactly. So an expert's rows and
 * outputs narrowed to its dtype give bit for bit the outputs of the single-node forward.
 *
 * @param bytes rows × cols values of {@code dtype}, little-endian; not copied, not to be changed
 */
public record WireTensor(DType dtype, int rows, int cols, byte[] bytes) {
    public WireTensor {
        Objects.requireNonNull(dtype, "dtype");
        if (rows < 0 || cols <= 0 || (long) rows * cols * dtype.byteSize() != bytes.length) {
            throw new IllegalArgumentException("a (" + rows + ", " + cols + ") " + dtype.shortName()
                    + " tensor needs " + (long) rows * cols * dtype.byteSize() + " bytes, got " + bytes.length);
        }
    }

    /** A tensor to fill row by row, each value narrowed to {@code dtype} as it is copied. */
    public static Writer writer(DType dtype, int rows, int cols) {
        return new Writer(dtype, rows, cols);
    }

    /**
     * {@code rows × cols} float32 values from {@code src} (an engine's output, any byte order set
     * on it) narrowed to {@code dtype}.
     */
    public static WireTensor of(DType dtype, ByteBuffer src, int rows, int cols) {
        Writer w = writer(dtype, rows, cols);
        w.putAll(src.asFloatBuffer());
        return w.done();
    }

    /** The bytes on the wire. */
    public int byteSize() {
        return bytes.length;
    }

    /** Widens rows {@code [from, from + n)} into {@code dst} at {@code at}. */
    public void read(int from, int n, float[] dst, int at) {
        if (from < 0 || n < 0 || from + n > rows) {
            throw new IndexOutOfBoundsException("rows " + from + ".." + (from + n) + " of a tensor of " + rows);
        }
        int count = n * cols;
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        int first = from * cols;
        switch (dtype) {
            case F32 -> b.asFloatBuffer().get(first, dst, at, count);
            case BF16 -> {
                ShortBuffer s = b.asShortBuffer();
                for (int i = 0; i < count; i++) {
                    dst[at + i] = Float.intBitsToFloat(s.get(first + i) << 16); // exact: bf16 is float32's top half
                }
            }
            case F16 -> {
                ShortBuffer s = b.asShortBuffer();
                for (int i = 0; i < count; i++) {
                    dst[at + i] = Float.float16ToFloat(s.get(first + i));
                }
            }
        }
    }

    /**
     * All values widened to float32 in a direct buffer in native order, for the engine to take
     * without another copy; for float32 this is the one copy of the bytes off the heap.
     */
    public ByteBuffer toDirectF32() {
        ByteBuffer out = ByteBuffer.allocateDirect(rows * cols * Float.BYTES).order(ByteOrder.nativeOrder());
        FloatBuffer f = out.asFloatBuffer();
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        int count = rows * cols;
        switch (dtype) {
            case F32 -> f.put(b.asFloatBuffer());
            case BF16 -> {
                ShortBuffer s = b.asShortBuffer();
                for (int i = 0; i < count; i++) {
                    f.put(i, Float.intBitsToFloat(s.get(i) << 16));
                }
            }
            case F16 -> {
                ShortBuffer s = b.asShortBuffer();
                for (int i = 0; i < count; i++) {
                    f.put(i, Float.float16ToFloat(s.get(i)));
                }
            }
        }
        return out;
    }

    /** Fills a {@link WireTensor} row by row, narrowing as it copies. */
    public static final class Writer {
        private final DType dtype;
        private final int rows;
        private final int cols;
        private final byte[] bytes;
        private final ByteBuffer out;
        private int written; // values

        private Writer(DType dtype, int rows, int cols) {
            this.dtype = Objects.requireNonNull(dtype, "dtype");
            this.rows = rows;
            this.cols = cols;
            long n = (long) rows * cols * dtype.byteSize();
            if (rows < 0 || cols <= 0 || n > Integer.MAX_VALUE - 64) {
                throw new IllegalArgumentException("no wire tensor of (" + rows + ", " + cols + ") "
                        + dtype.shortName());
            }
            this.bytes = new byte[(int) n];
            this.out = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        }

        /** Appends row {@code row} of {@code x} (row-major, cols wide). */
        public Writer putRow(float[] x, int row) {
            return put(x, row * cols, cols);
        }

        /** Appends {@code n} values of {@code src} from {@code at}. */
        public Writer put(float[] src, int at, int n) {
            room(n);
            switch (dtype) {
                case F32 -> out.asFloatBuffer().put(written, src, at, n);
                case BF16 -> {
                    ShortBuffer s = out.asShortBuffer();
                    for (int i = 0; i < n; i++) {
                        s.put(written + i, SafetensorsWriter.toBf16(src[at + i]));
                    }
                }
                case F16 -> {
                    ShortBuffer s = out.asShortBuffer();
                    for (int i = 0; i < n; i++) {
                        s.put(written + i, Float.floatToFloat16(src[at + i]));
                    }
                }
            }
            written += n;
            return this;
        }

        private void putAll(FloatBuffer src) {
            int n = src.remaining();
            room(n);
            switch (dtype) {
                case F32 -> out.asFloatBuffer().put(written, src, src.position(), n);
                case BF16 -> {
                    ShortBuffer s = out.asShortBuffer();
                    for (int i = 0; i < n; i++) {
                        s.put(written + i, SafetensorsWriter.toBf16(src.get(src.position() + i)));
                    }
                }
                case F16 -> {
                    ShortBuffer s = out.asShortBuffer();
                    for (int i = 0; i < n; i++) {
                        s.put(written + i, Float.floatToFloat16(src.get(src.position() + i)));
                    }
                }
            }
            written += n;
        }

        private void room(int n) {
            if ((long) written + n > (long) rows * cols) {
                throw new IllegalStateException("a (" + rows + ", " + cols + ") wire tensor cannot take " + n
                        + " more values after " + written);
            }
        }

        /** The tensor, once every row is written. */
        public WireTensor done() {
            if (written != rows * cols) {
                throw new IllegalStateException("wire tensor of (" + rows + ", " + cols + ") has only " + written
                        + " values written");
            }
            return new WireTensor(dtype, rows, cols, bytes);
        }
    }
}
