package dev.cmoe.model.safetensors;

import java.util.Arrays;
import java.util.Objects;

/**
 * One validated header entry: where a tensor's bytes lie, relative to the data section's start.
 *
 * <p>The shape array is copied in and out so a caller cannot alter a file's validated header;
 * equality compares shapes by content, which the default record methods would not.
 */
public record TensorInfo(String name, DType dtype, long[] shape, long begin, long end) {

  public TensorInfo {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(dtype, "dtype");
    shape = shape.clone();
    if (begin < 0 || begin > end) {
      throw new IllegalArgumentException("bad byte range [" + begin + ", " + end + ") for " + name);
    }
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  /** Number of elements: the product of the dims, 1 for a scalar (shape []). */
  public long numel() {
    long n = 1;
    for (long d : shape) {
      n = Math.multiplyExact(n, d);
    }
    return n;
  }

  /** Number of stored bytes, {@code end - begin}. */
  public long byteLength() {
    return end - begin;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof TensorInfo t
        && name.equals(t.name)
        && dtype == t.dtype
        && Arrays.equals(shape, t.shape)
        && begin == t.begin
        && end == t.end;
  }

  @Override
  public int hashCode() {
    return Objects.hash(name, dtype, Arrays.hashCode(shape), begin, end);
  }

  @Override
  public String toString() {
    return name + " " + dtype + Arrays.toString(shape) + " @[" + begin + ", " + end + ")";
  }
}
