package dev.cmoe.model.safetensors;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;

/**
 * One memory-mapped .safetensors file; validates the whole header on open before trusting
 * anything, then maps each tensor's bytes only when it is read, so a checkpoint far larger than
 * memory (or than one 2 GB mapping) can be opened and inspected cheaply.
 *
 * <p>Reads may run concurrently from several threads: the header is immutable after open and
 * each read makes its own mapping.
 */
public final class SafetensorsFile implements AutoCloseable {

  private final Path path;
  private final FileChannel channel;
  private final Header header;

  private SafetensorsFile(Path path, FileChannel channel, Header header) {
    this.path = path;
    this.channel = channel;
    this.header = header;
  }

  /**
   * Opens and validates {@code file}; any malformed header, unreadable file or I/O error is a
   * {@link SafetensorsException} naming the file, and nothing is left open.
   */
  public static SafetensorsFile open(Path file) {
    FileChannel channel;
    try {
      channel = FileChannel.open(file, StandardOpenOption.READ);
    } catch (IOException e) {
      throw new SafetensorsException(file + ": cannot open: " + e, e);
    }
    try {
      return new SafetensorsFile(file, channel, Header.read(channel, file));
    } catch (IOException e) {
      closeQuietly(channel, e);
      throw new SafetensorsException(file + ": cannot read header: " + e, e);
    } catch (RuntimeException | Error e) {
      closeQuietly(channel, e);
      throw e;
    }
  }

  private static void closeQuietly(FileChannel channel, Throwable primary) {
    try {
      channel.close();
    } catch (IOException e) {
      primary.addSuppressed(e);
    }
  }

  public Path path() {
    return path;
  }

  /** The {@code __metadata__} entries, empty when the file has none. */
  public Map<String, String> metadata() {
    return header.metadata;
  }

  /** All tensors by name, iterating in header order (the order the writer laid them out). */
  public Map<String, TensorInfo> tensors() {
    return header.tensors;
  }

  /**
   * The tensor's values as float32, position 0 and limit numel, whatever the stored dtype.
   *
   * <p>Only this tensor's byte range is mapped. For F32 the result is a read-only little-endian
   * view of that mapping (no copy; it stays valid after {@link #close()}); F16 and BF16 are
   * converted into a new heap buffer that the caller owns.
   *
   * @throws SafetensorsException if there is no such tensor, the file is closed, the tensor is
   *     over 2 GB (a single mapping's limit), or the bytes cannot be mapped
   */
  public FloatBuffer readF32(String name) {
    TensorInfo info = header.tensors.get(name);
    ByteBuffer bytes = map(name, info);
    if (bytes == null) {
      return FloatBuffer.allocate(0);
    }
    if (info.dtype() == DType.F32) {
      return bytes.asFloatBuffer(); // a view of the mapping, which the collector unmaps
    }
    FloatBuffer widened = info.dtype() == DType.F16 ? f16ToF32(bytes.asShortBuffer())
        : bf16ToF32(bytes.asShortBuffer());
    RawTensor.free(bytes); // converted: the mapping need not outlive this call
    return widened;
  }

  /**
   * The tensor's stored bytes, mapped (only its own byte range) and not converted; the caller
   * releases the mapping with {@link RawTensor#release()} once the engine has its own copy.
   *
   * @throws SafetensorsException as {@link #readF32}
   */
  public RawTensor readRaw(String name) {
    TensorInfo info = header.tensors.get(name);
    ByteBuffer bytes = map(name, info);
    if (bytes == null) {
      return new RawTensor(name, info.dtype(), info.shape(),
          ByteBuffer.allocateDirect(0).order(ByteOrder.LITTLE_ENDIAN), false);
    }
    return new RawTensor(name, info.dtype(), info.shape(), bytes, true); // a mapping of its own
  }

  /** Maps {@code name}'s bytes read-only and little-endian; null for a tensor of no bytes. */
  private ByteBuffer map(String name, TensorInfo info) {
    if (info == null) {
      throw new SafetensorsException("no tensor '" + name + "' in " + path);
    }
    if (!channel.isOpen()) {
      throw new SafetensorsException("cannot read tensor '" + name + "': " + path + " is closed");
    }
    long length = info.byteLength();
    if (length > Integer.MAX_VALUE) {
      throw new SafetensorsException("tensor '" + name + "' in " + path + " is too large to map ("
          + length + " bytes; one mapping holds at most " + Integer.MAX_VALUE + ")");
    }
    if (length == 0) {
      return null;
    }
    try {
      return channel.map(FileChannel.MapMode.READ_ONLY, header.dataStart + info.begin(), length)
          .order(ByteOrder.LITTLE_ENDIAN);
    } catch (IOException | UncheckedIOException e) {
      throw new SafetensorsException("cannot map tensor '" + name + "' in " + path + ": " + e, e);
    }
  }

  private static FloatBuffer f16ToF32(ShortBuffer src) {
    float[] out = new float[src.remaining()];
    for (int i = 0; i < out.length; i++) {
      out[i] = Float.float16ToFloat(src.get(i));
    }
    return FloatBuffer.wrap(out);
  }

  /** bf16 is the top half of a float32, so widening is exact: shift the bits back up. */
  private static FloatBuffer bf16ToF32(ShortBuffer src) {
    float[] out = new float[src.remaining()];
    for (int i = 0; i < out.length; i++) {
      out[i] = Float.intBitsToFloat(src.get(i) << 16);
    }
    return FloatBuffer.wrap(out);
  }

  /** Closes the file; buffers already returned by {@link #readF32} stay valid. */
  @Override
  public void close() {
    try {
      channel.close();
    } catch (IOException e) {
      throw new SafetensorsException(path + ": cannot close: " + e, e);
    }
  }

  @Override
  public String toString() {
    return "SafetensorsFile[" + path + ", " + header.tensors.size() + " tensors]";
  }
}
