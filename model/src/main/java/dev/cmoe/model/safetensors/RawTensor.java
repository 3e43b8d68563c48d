package dev.cmoe.model.safetensors;

import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One tensor's stored bytes at their stored dtype, as a little-endian direct buffer (usually a
 * mapping of just its byte range), so a loader can hand them to the engine without widening them
 * first. {@link #release()} unmaps a mapping at once instead of whenever the collector gets to it:
 * a served model must not keep the file mapped beside the engine's copy of its weights.
 *
 * @param bytes position 0, limit the tensor's byte length; invalid after {@link #release()}
 * @param releasable whether {@link #release()} frees {@code bytes} (a mapping or a buffer made for
 *     this tensor alone)
 */
public record RawTensor(String name, DType dtype, long[] shape, ByteBuffer bytes, boolean releasable) {

  private static final Unmapper UNMAPPER = Unmapper.find();

  public RawTensor {
    shape = shape.clone();
    if (!bytes.isDirect() || bytes.order() != ByteOrder.LITTLE_ENDIAN) {
      throw new IllegalArgumentException("raw tensor '" + name + "' needs a little-endian direct buffer");
    }
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  /** Number of elements. */
  public long numel() {
    return bytes.remaining() / dtype.byteSize();
  }

  /**
   * The bytes of float32 {@code values} in a fresh direct buffer that {@link #release()} frees: how
   * tensors built in memory (tests, carving) reach the same loader as a checkpoint's.
   */
  public static RawTensor ofF32(String name, java.nio.FloatBuffer values, long... shape) {
    ByteBuffer bytes = ByteBuffer.allocateDirect(Math.multiplyExact(values.remaining(), Float.BYTES))
        .order(ByteOrder.LITTLE_ENDIAN);
    bytes.asFloatBuffer().put(values.duplicate());
    return new RawTensor(name, DType.F32, shape, bytes, true);
  }

  /** Frees a direct buffer made for one tensor (a staging buffer, say) now rather than at a collection. */
  public static void free(ByteBuffer direct) {
    UNMAPPER.unmap(direct);
  }

  /** Frees the bytes now if they are releasable; no engine tensor may still alias them. */
  public void release() {
    if (releasable) {
      UNMAPPER.unmap(bytes);
    }
  }

  /**
   * Frees a direct buffer (a mapping or an allocation) deterministically through the JDK's {@code Unsafe.invokeCleaner} (exported by
   * jdk.unsupported for exactly this); where a runtime hides it, mappings fall back to being freed
   * by the collector, which is only slower to give memory back.
   */
  private record Unmapper(Object unsafe, Method invokeCleaner) {
    static Unmapper find() {
      try {
        Class<?> type = Class.forName("sun.misc.Unsafe");
        Field field = type.getDeclaredField("theUnsafe");
        field.setAccessible(true);
        return new Unmapper(field.get(null), type.getMethod("invokeCleaner", ByteBuffer.class));
      } catch (ReflectiveOperationException | RuntimeException e) {
        return new Unmapper(null, null);
      }
    }

    void unmap(ByteBuffer buffer) {
      if (invokeCleaner == null) {
        return;
      }
      try {
        invokeCleaner.invoke(unsafe, buffer);
      } catch (ReflectiveOperationException e) {
        throw new IllegalStateException("cannot unmap a tensor's bytes: " + e, e);
      }
    }
  }
}
