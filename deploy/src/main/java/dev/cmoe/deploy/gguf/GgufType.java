package dev.cmoe.deploy.gguf;

import dev.cmoe.model.safetensors.SafetensorsWriter;

import java.nio.ByteBuffer;
import java.util.Locale;

/**
 * The GGML element types a converted tensor may be stored in, with their GGUF type ids and the
 * {@code general.file_type} a file mostly of that type declares (llama.cpp's {@code llama_ftype}).
 */
public enum GgufType {
    F32(0, 4, 0),
    F16(1, 2, 1),
    BF16(30, 2, 32);

    private final int ggmlType;
    private final int byteSize;
    private final int fileType;

    GgufType(int ggmlType, int byteSize, int fileType) {
        this.ggmlType = ggmlType;
        this.byteSize = byteSize;
        this.fileType = fileType;
    }

    /** The {@code ggml_type} id written in a tensor info. */
    public int ggmlType() {
        return ggmlType;
    }

    /** Bytes per element. */
    public int byteSize() {
        return byteSize;
    }

    /** The {@code general.file_type} of a file whose matrices are of this type. */
    public int fileType() {
        return fileType;
    }

    /** Appends {@code count} values of {@code src} to {@code dst} (little-endian) in this type. */
    void encode(float[] src, int count, ByteBuffer dst) {
        switch (this) {
            case F32 -> {
                for (int i = 0; i < count; i++) {
                    dst.putFloat(src[i]);
                }
            }
            case F16 -> {
                for (int i = 0; i < count; i++) {
                    dst.putShort(Float.floatToFloat16(src[i]));
                }
            }
            case BF16 -> {
                for (int i = 0; i < count; i++) {
                    dst.putShort(SafetensorsWriter.toBf16(src[i]));
                }
            }
        }
    }

    /** The type named {@code name} (f32, f16, bf16, any case). */
    public static GgufType parse(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "f32", "float32" -> F32;
            case "f16", "float16" -> F16;
            case "bf16", "bfloat16" -> BF16;
            default -> throw new IllegalArgumentException("GGUF type must be f32, f16 or bf16, got '" + name + "'");
        };
    }
}
