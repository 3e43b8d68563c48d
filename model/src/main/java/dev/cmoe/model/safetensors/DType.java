package dev.cmoe.model.safetensors;

import java.nio.file.Path;

/**
 * The stored element types we support; the constant names are exactly the dtype strings of the
 * safetensors header, so {@link #name()} is what goes into a file.
 */
public enum DType {
  F32(4),
  F16(2),
  BF16(2);

  private final int byteSize;

  DType(int byteSize) {
    this.byteSize = byteSize;
  }

  /** Bytes per stored element. */
  public int byteSize() {
    return byteSize;
  }

  /**
   * The dtype named {@code name} in the header of {@code file} for {@code tensor}; anything else
   * (I8, F64, ...) is rejected here so no caller ever sees a tensor it cannot convert.
   */
  public static DType parse(String name, Path file, String tensor) {
    for (DType d : values()) {
      if (d.name().equals(name)) {
        return d;
      }
    }
    throw new SafetensorsException(
        "unsupported safetensors dtype '" + name + "' for tensor '" + tensor + "' in " + file);
  }
}
