package dev.cmoe.deploy.gguf;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;
import java.util.function.IntUnaryOperator;
import java.util.function.Supplier;

/**
 * Writes a GGUF (version 3) file: the key/value metadata, the tensor infos, then each tensor's
 * data at an aligned offset. Tensors are streamed row by row from their source, so a checkpoint
 * larger than the heap converts in bounded memory; the file appears under its name only once it
 * is complete (written to a sibling temporary file, then renamed).
 */
public final class GgufWriter {
    /** GGUF's magic, "GGUF" read as a little-endian uint32. */
    static final int MAGIC = 0x46554747;
    static final int VERSION = 3;
    /** Tensor data alignment; also written as {@code general.alignment}. */
    static final int ALIGNMENT = 32;

    // gguf_type ids of the metadata values
    static final int T_UINT32 = 4;
    static final int T_INT32 = 5;
    static final int T_FLOAT32 = 6;
    static final int T_BOOL = 7;
    static final int T_STRING = 8;
    static final int T_ARRAY = 9;

    private static final int CHUNK_BYTES = 4 << 20;

    /**
     * One tensor to write: {@code rows × width} float32 source values, stored as {@code type}.
     *
     * @param name the GGUF tensor name (e.g. {@code blk.0.attn_q.weight})
     * @param dims GGUF's dims, fastest-varying first ({@code [width, rows]} for a matrix)
     * @param rows rows of the row-major source
     * @param width elements per row
     * @param data opens the source values, in row-major order
     * @param sourceRow the source row that output row {@code r} is (a permutation of the rows)
     */
    public record Tensor(String name, long[] dims, GgufType type, int rows, int width, Supplier<FloatBuffer> data,
                         IntUnaryOperator sourceRow) {
        public Tensor {
            dims = dims.clone();
        }

        @Override
        public long[] dims() {
            return dims.clone();
        }

        /** A (rows, cols) row-major matrix, its rows reordered by {@code sourceRow}. */
        public static Tensor matrix(String name, int rows, int cols, GgufType type, Supplier<FloatBuffer> data,
                                    IntUnaryOperator sourceRow) {
            return new Tensor(name, new long[] {cols, rows}, type, rows, cols, data, sourceRow);
        }

        /** A float32 vector of {@code n}, its elements reordered by {@code sourceIndex}. */
        public static Tensor vector(String name, int n, Supplier<FloatBuffer> data, IntUnaryOperator sourceIndex) {
            return new Tensor(name, new long[] {n}, GgufType.F32, n, 1, data, sourceIndex);
        }

        long byteLength() {
            return (long) rows * width * type.byteSize();
        }
    }

    private final Le header = new Le();
    private final Set<String> keys = new LinkedHashSet<>();
    private final List<Tensor> tensors = new ArrayList<>();
    private final Set<String> tensorNames = new LinkedHashSet<>();

    public GgufWriter() {
        putU32("general.alignment", ALIGNMENT);
    }

    public GgufWriter putString(String key, String value) {
        key(key, T_STRING).str(value);
        return this;
    }

    public GgufWriter putU32(String key, long value) {
        if (value < 0 || value > 0xffffffffL) {
            throw new IllegalArgumentException(key + " = " + value + " does not fit a uint32");
        }
        key(key, T_UINT32).u32((int) value);
        return this;
    }

    public GgufWriter putF32(String key, double value) {
        key(key, T_FLOAT32).f32((float) value);
        return this;
    }

    public GgufWriter putBool(String key, boolean value) {
        key(key, T_BOOL).u8(value ? 1 : 0);
        return this;
    }

    public GgufWriter putStrings(String key, List<String> values) {
        key(key, T_ARRAY).u32(T_STRING).u64(values.size());
        values.forEach(header::str);
        return this;
    }

    public GgufWriter putInts(String key, int[] values) {
        key(key, T_ARRAY).u32(T_INT32).u64(values.length);
        for (int v : values) {
            header.u32(v);
        }
        return this;
    }

    /** Tensors added so far. */
    public int tensorCount() {
        return tensors.size();
    }

    public GgufWriter add(Tensor t) {
        if (!tensorNames.add(t.name())) {
            throw new IllegalArgumentException("tensor " + t.name() + " added twice");
        }
        tensors.add(t);
        return this;
    }

    private Le key(String key, int type) {
        if (!keys.add(key)) {
            throw new IllegalArgumentException("metadata key " + key + " written twice");
        }
        header.str(key);
        header.u32(type);
        return header;
    }

    /**
     * Writes the file to {@code out}, replacing it; {@code progress} hears each tensor's name as it
     * is written. A failure leaves no partial file under {@code out}.
     */
    public void write(Path out, Consumer<String> progress) {
        Path abs = out.toAbsolutePath().normalize();
        Path tmp = abs.resolveSibling("." + abs.getFileName() + ".tmp-" + ProcessHandle.current().pid() + "-"
                + System.nanoTime());
        try {
            Files.createDirectories(abs.getParent());
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    StandardOpenOption.TRUNCATE_EXISTING)) {
                writeAll(ch, progress);
                ch.force(true);
            }
            try {
                Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, abs, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException | RuntimeException e) {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            if (e instanceof IOException io) {
                throw new UncheckedIOException("cannot write " + out + ": " + io.getMessage(), io);
            }
            throw (RuntimeException) e;
        }
    }

    private void writeAll(FileChannel ch, Consumer<String> progress) throws IOException {
        Le head = new Le();
        head.u32(MAGIC).u32(VERSION).u64(tensors.size()).u64(keys.size());
        head.raw(header.bytes());
        long offset = 0;
        for (Tensor t : tensors) {
            long[] dims = t.dims();
            head.str(t.name()).u32(dims.length);
            for (long d : dims) {
                head.u64(d);
            }
            head.u32(t.type().ggmlType()).u64(offset);
            offset = align(offset + t.byteLength());
        }
        byte[] bytes = head.bytes();
        writeFully(ch, ByteBuffer.wrap(bytes));
        long pos = bytes.length;
        pos = pad(ch, pos);
        ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        for (Tensor t : tensors) {
            progress.accept(t.name());
            pos += writeTensor(ch, t, chunk);
            pos = pad(ch, pos);
        }
    }

    private static long writeTensor(FileChannel ch, Tensor t, ByteBuffer chunk) throws IOException {
        FloatBuffer src = t.data().get();
        long expected = (long) t.rows() * t.width();
        if (src.remaining() != expected) {
            throw new IllegalStateException("tensor " + t.name() + " has " + src.remaining() + " values, expected "
                    + t.rows() + " × " + t.width());
        }
        int base = src.position();
        float[] row = new float[t.width()];
        int rowBytes = t.width() * t.type().byteSize();
        chunk.clear();
        for (int r = 0; r < t.rows(); r++) {
            int from = t.sourceRow().applyAsInt(r);
            if (rowBytes > chunk.remaining()) {
                flush(ch, chunk);
            }
            src.get(base + from * t.width(), row);
            if (rowBytes > chunk.capacity()) { // a row wider than the chunk: write it in pieces
                writeWideRow(ch, t.type(), row);
            } else {
                t.type().encode(row, row.length, chunk);
            }
        }
        flush(ch, chunk);
        return t.byteLength();
    }

    private static void writeWideRow(FileChannel ch, GgufType type, float[] row) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(row.length * type.byteSize()).order(ByteOrder.LITTLE_ENDIAN);
        type.encode(row, row.length, b);
        b.flip();
        writeFully(ch, b);
    }

    private static void flush(FileChannel ch, ByteBuffer chunk) throws IOException {
        chunk.flip();
        writeFully(ch, chunk);
        chunk.clear();
    }

    private static long pad(FileChannel ch, long pos) throws IOException {
        int n = (int) (align(pos) - pos);
        if (n > 0) {
            writeFully(ch, ByteBuffer.allocate(n));
        }
        return pos + n;
    }

    private static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    static long align(long n) {
        return (n + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }

    /** A growable little-endian byte sink for the header. */
    private static final class Le {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();

        Le u8(int v) {
            out.write(v);
            return this;
        }

        Le u32(int v) {
            for (int i = 0; i < 4; i++) {
                out.write(v >>> (8 * i));
            }
            return this;
        }

        Le u64(long v) {
            for (int i = 0; i < 8; i++) {
                out.write((int) (v >>> (8 * i)));
            }
            return this;
        }

        Le f32(float v) {
            return u32(Float.floatToRawIntBits(v));
        }

        Le str(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            u64(b.length);
            out.write(b, 0, b.length);
            return this;
        }

        Le raw(byte[] b) {
            out.write(b, 0, b.length);
            return this;
        }

        byte[] bytes() {
            return out.toByteArray();
        }
    }
}
