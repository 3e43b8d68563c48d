package dev.cmoe.model.safetensors;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;

/**
 * Writes one .safetensors file so that readers only ever see a complete file or none: data goes
 * to a temp file in the same directory, is fsynced, then atomically renamed into place. Tensors
 * are laid out in the map's iteration order, and the header is padded with spaces to a multiple
 * of 8 bytes as the Hugging Face library does, so the data section starts aligned.
 */
public final class SafetensorsWriter {

  /** One tensor to write: its shape and float32 source values (position to limit). */
  public record Tensor(long[] shape, FloatBuffer data) {
    public Tensor {
      shape = Objects.requireNonNull(shape, "shape").clone();
      Objects.requireNonNull(data, "data");
    }

    @Override
    public long[] shape() {
      return shape.clone();
    }
  }

  // Html escaping would turn '<' in a tensor name into \u003c: valid, but not what others write.
  private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();
  static final int CHUNK_BYTES = 1 << 20;

  private SafetensorsWriter() {}

  /**
   * Writes {@code tensors} to {@code file}, converted to {@code dtype} (F16 rounds with
   * {@link Float#floatToFloat16}; BF16 rounds to nearest even), replacing any existing file.
   *
   * @param metadata written as {@code __metadata__} unless null or empty
   * @throws IllegalArgumentException before anything is written, if a name is reserved, a dim is
   *     negative, or a tensor's data length does not match its shape
   * @throws UncheckedIOException if writing fails; the temp file is removed and {@code file} is
   *     left as it was
   */
  public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata,
      DType dtype) {
    Objects.requireNonNull(dtype, "dtype");
    byte[] header = header(tensors, metadata == null ? Map.of() : metadata, dtype);
    Path target = file.toAbsolutePath();
    Path dir = target.getParent();
    Path temp = dir.resolve("." + target.getFileName() + "." + UUID.randomUUID() + ".tmp");
    try {
      // CREATE_NEW rather than createTempFile: the file keeps the umask's permissions, not 0600.
      try (FileChannel out = FileChannel.open(temp, StandardOpenOption.CREATE_NEW,
          StandardOpenOption.WRITE)) {
        ByteBuffer length = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        writeFully(out, length.putLong(0, header.length));
        writeFully(out, ByteBuffer.wrap(header));
        ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        for (Tensor t : tensors.values()) {
          writeData(out, t.data().duplicate(), dtype, chunk);
        }
        out.force(true);
      }
      Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE);
    } catch (IOException e) {
      deleteAfterFailure(temp, e);
      throw new UncheckedIOException("cannot write " + target + ": " + e, e);
    } catch (RuntimeException | Error e) {
      deleteAfterFailure(temp, e);
      throw e;
    }
    syncDirectory(dir);
  }

  private static void deleteAfterFailure(Path temp, Throwable failure) {
    try {
      Files.deleteIfExists(temp);
    } catch (IOException e) {
      failure.addSuppressed(e);
    }
  }

  /**
   * The padded JSON header; validates every tensor first so a bad argument fails before any file
   * exists, and the byte count checks here are what make the streaming writes below safe.
   */
  private static byte[] header(Map<String, Tensor> tensors, Map<String, String> metadata,
      DType dtype) {
    Map<String, long[]> shapes = new java.util.LinkedHashMap<>();
    for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
      String name = Objects.requireNonNull(e.getKey(), "tensor name");
      Tensor t = Objects.requireNonNull(e.getValue(), name);
      long numel = numel(name, t.shape());
      if (t.data().remaining() != numel) {
        throw new IllegalArgumentException("tensor '" + name + "' has shape "
            + Arrays.toString(t.shape()) + " (" + (numel == Long.MAX_VALUE ? "over 2^31" : numel)
            + " elements) but " + t.data().remaining() + " values");
      }
      shapes.put(name, t.shape());
    }
    return header(shapes, metadata, dtype, null);
  }

  /**
   * The padded JSON header of tensors laid out in {@code shapes}' order, every one in
   * {@code dtype}; {@code offsets}, unless null, receives each tensor's start in the data section.
   */
  static byte[] header(Map<String, long[]> shapes, Map<String, String> metadata, DType dtype,
      Map<String, Long> offsets) {
    JsonObject root = new JsonObject();
    if (!metadata.isEmpty()) {
      JsonObject meta = new JsonObject();
      metadata.forEach((k, v) -> meta.addProperty(
          Objects.requireNonNull(k, "metadata key"), Objects.requireNonNull(v, "metadata value")));
      root.add(Header.METADATA_KEY, meta);
    }
    long offset = 0;
    for (Map.Entry<String, long[]> e : shapes.entrySet()) {
      String name = Objects.requireNonNull(e.getKey(), "tensor name");
      long[] shape = Objects.requireNonNull(e.getValue(), name);
      if (name.equals(Header.METADATA_KEY)) {
        throw new IllegalArgumentException("tensor name " + name + " is reserved");
      }
      long numel = numel(name, shape);
      if (numel == Long.MAX_VALUE) {
        throw new IllegalArgumentException("tensor '" + name + "' of shape " + Arrays.toString(shape)
            + " has over 2^31 elements");
      }
      JsonArray dims = new JsonArray();
      for (long d : shape) {
        dims.add(d);
      }
      // numel < 2^31 here, so only the running offset can overflow.
      long end = Math.addExact(offset, numel * dtype.byteSize());
      JsonObject entry = new JsonObject();
      entry.addProperty("dtype", dtype.name());
      entry.add("shape", dims);
      JsonArray range = new JsonArray();
      range.add(offset);
      range.add(end);
      entry.add("data_offsets", range);
      root.add(name, entry);
      if (offsets != null) {
        offsets.put(name, offset);
      }
      offset = end;
    }
    byte[] json = GSON.toJson(root).getBytes(StandardCharsets.UTF_8);
    int padded = (json.length + 7) & ~7;
    if (padded > Header.MAX_HEADER_BYTES) {
      throw new IllegalArgumentException("header of " + padded + " bytes exceeds the limit of "
          + Header.MAX_HEADER_BYTES + " that readers accept");
    }
    byte[] header = Arrays.copyOf(json, padded);
    Arrays.fill(header, json.length, padded, (byte) ' ');
    return header;
  }

  /** Elements of {@code shape}, or Long.MAX_VALUE past 2^31 (a FloatBuffer cannot hold more). */
  static long numel(String name, long[] shape) {
    long numel = 1;
    for (long d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException(
            "tensor '" + name + "' has a negative dim in shape " + Arrays.toString(shape));
      }
      numel = d == 0 || numel <= Integer.MAX_VALUE / d ? numel * d : Long.MAX_VALUE;
    }
    return numel;
  }

  /** Streams one tensor through {@code chunk}, converting as it goes so memory stays bounded. */
  static void writeData(FileChannel out, FloatBuffer src, DType dtype, ByteBuffer chunk)
      throws IOException {
    while (src.hasRemaining()) {
      chunk.clear();
      int n = Math.min(src.remaining(), CHUNK_BYTES / dtype.byteSize());
      int at = src.position();
      switch (dtype) {
        case F32 -> chunk.asFloatBuffer().put(src.slice(at, n));
        case F16 -> {
          ShortBuffer dst = chunk.asShortBuffer();
          for (int i = 0; i < n; i++) {
            dst.put(i, Float.floatToFloat16(src.get(at + i)));
          }
        }
        case BF16 -> {
          ShortBuffer dst = chunk.asShortBuffer();
          for (int i = 0; i < n; i++) {
            dst.put(i, toBf16(src.get(at + i)));
          }
        }
      }
      src.position(at + n);
      writeFully(out, chunk.limit(n * dtype.byteSize()));
    }
  }

  /**
   * Float32 to bfloat16 with round-to-nearest-even on the dropped 16 bits (plain truncation
   * would bias every weight towards zero). NaN is kept quiet: rounding could carry it into Inf.
   */
  public static short toBf16(float value) {
    int bits = Float.floatToRawIntBits(value);
    if (Float.isNaN(value)) {
      return (short) ((bits >>> 16) | 0x0040);
    }
    int roundingBias = 0x7FFF + ((bits >>> 16) & 1);
    return (short) ((bits + roundingBias) >>> 16);
  }

  static void writeFully(FileChannel out, ByteBuffer bytes) throws IOException {
    while (bytes.hasRemaining()) {
      out.write(bytes);
    }
  }

  /**
   * Makes the rename itself durable. Best effort: not every platform lets a directory be opened
   * and synced, and the file is already complete and in place either way.
   */
  static void syncDirectory(Path dir) {
    try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
      d.force(true);
    } catch (IOException | UnsupportedOperationException e) {
      // ignored: see above
    }
  }
}
