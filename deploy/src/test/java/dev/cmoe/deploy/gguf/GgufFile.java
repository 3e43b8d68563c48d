package dev.cmoe.deploy.gguf;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A GGUF reader written from the format's specification for the tests only, sharing no code with
 * {@link GgufWriter}, so a writer bug is not mirrored by the reader. Values: integers as Long,
 * floats as Double, strings, booleans, arrays as lists.
 */
final class GgufFile {
    record Info(String name, long[] dims, int type, long offset) {
    }

    final int magic;
    final int version;
    final Map<String, Object> kv = new LinkedHashMap<>();
    final Map<String, Info> tensors = new LinkedHashMap<>();
    final long dataStart;
    final long fileSize;
    private final ByteBuffer b;

    GgufFile(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            fileSize = ch.size();
            b = ch.map(FileChannel.MapMode.READ_ONLY, 0, fileSize).order(ByteOrder.LITTLE_ENDIAN);
        }
        magic = b.getInt();
        version = b.getInt();
        long nTensors = b.getLong();
        long nKv = b.getLong();
        for (long i = 0; i < nKv; i++) {
            String key = string();
            kv.put(key, value(b.getInt()));
        }
        for (long i = 0; i < nTensors; i++) {
            String name = string();
            int nDims = b.getInt();
            long[] dims = new long[nDims];
            for (int d = 0; d < nDims; d++) {
                dims[d] = b.getLong();
            }
            tensors.put(name, new Info(name, dims, b.getInt(), b.getLong()));
        }
        long alignment = kv.containsKey("general.alignment") ? (Long) kv.get("general.alignment") : 32;
        dataStart = (b.position() + alignment - 1) / alignment * alignment;
    }

    private String string() {
        byte[] s = new byte[Math.toIntExact(b.getLong())];
        b.get(s);
        return new String(s, StandardCharsets.UTF_8);
    }

    private Object value(int type) {
        return switch (type) {
            case 0 -> (long) Byte.toUnsignedInt(b.get());
            case 1 -> (long) b.get();
            case 2 -> (long) Short.toUnsignedInt(b.getShort());
            case 3 -> (long) b.getShort();
            case 4 -> Integer.toUnsignedLong(b.getInt());
            case 5 -> (long) b.getInt();
            case 6 -> (double) b.getFloat();
            case 7 -> b.get() != 0;
            case 8 -> string();
            case 9 -> {
                int elem = b.getInt();
                long n = b.getLong();
                List<Object> list = new ArrayList<>();
                for (long i = 0; i < n; i++) {
                    list.add(value(elem));
                }
                yield list;
            }
            case 10, 11 -> b.getLong();
            case 12 -> b.getDouble();
            default -> throw new IllegalStateException("unknown GGUF value type " + type);
        };
    }

    /** The tensor's values widened to float, in stored order (type 0 f32, 1 f16, 30 bf16). */
    float[] data(String name) {
        Info t = tensors.get(name);
        long n = 1;
        for (long d : t.dims()) {
            n *= d;
        }
        float[] out = new float[Math.toIntExact(n)];
        int at = Math.toIntExact(dataStart + t.offset());
        for (int i = 0; i < out.length; i++) {
            out[i] = switch (t.type()) {
                case 0 -> b.getFloat(at + 4 * i);
                case 1 -> Float.float16ToFloat(b.getShort(at + 2 * i));
                case 30 -> Float.intBitsToFloat(b.getShort(at + 2 * i) << 16);
                default -> throw new IllegalStateException("type " + t.type());
            };
        }
        return out;
    }

    /** Bytes per element of a GGML type id. */
    static int elementBytes(int type) {
        return switch (type) {
            case 0 -> 4;
            case 1, 30 -> 2;
            default -> throw new IllegalStateException("type " + type);
        };
    }
}
