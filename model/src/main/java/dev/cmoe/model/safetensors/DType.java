package dev.cmoe.model.safetensors;

import java.nio.file.Path;

/**
 * The stored element types we support; the constant names are exactly the dtype strings of the
 * safetensors header, so {@link #name()} is what goes into a file.
 */
public enum DType {
  F32(4, "float32", "f32"),
  F16(2, "float16", "f16"),
  BF16(2, "bfloat16", "bf16");

  private final int byteSize;
  private final String torchName;
  private final String shortName;

  DType(int byteSize, String torchName, String shortName) {
    this.byteSize = byteSize;
    this.torchName = torchName;
    this.shortName = shortName;
  }

  /** The name config.json's {@code torch_dtype} uses ("bfloat16"). */
  public String torchName() {
    return torchName;
  }

  /** The name the command line uses ("bf16"). */
  public String shortName() {
    return shortName;
  }

  /** The dtype whose {@link #torchName()} or {@link #shortName()} is {@code name}, if any. */
  public static java.util.Optional<DType> named(String name) {
    for (DType d : values()) {
      if (d.torchName.equals(name) || d.shortName.equals(name)) {
        return java.util.Optional.of(d);
      }
    }
    return java.util.Optional.empty();
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
