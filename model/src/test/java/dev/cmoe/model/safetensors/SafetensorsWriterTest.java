package dev.cmoe.model.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsWriterTest {

  @TempDir Path dir;

  private static SafetensorsWriter.Tensor tensor(long[] shape, float... values) {
    return new SafetensorsWriter.Tensor(shape, FloatBuffer.wrap(values));
  }

  private List<Path> listDir() throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.toList();
    }
  }

  @Test
  void headerIsPaddedWithSpacesToEightBytes() throws IOException {
    Path file = dir.resolve("pad.safetensors");
    // A one-letter name makes an unaligned JSON length likely; check it rather than assume it.
    SafetensorsWriter.write(file, Map.of("w", tensor(new long[] {1}, 3f)), Map.of(), DType.F32);
    byte[] bytes = Files.readAllBytes(file);
    long n = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
    assertEquals(0, n % 8, "header length " + n);
    assertEquals(8 + n + 4, bytes.length);
    String header = new String(bytes, 8, (int) n, StandardCharsets.UTF_8);
    String json = header.stripTrailing();
    assertTrue(json.endsWith("}"), header);
    assertTrue(header.substring(json.length()).chars().allMatch(c -> c == ' '), header);
    assertEquals((json.length() + 7) / 8 * 8, n, "padding must be minimal, as the HF library does");
    assertTrue(json.contains("\"data_offsets\":[0,4]"), json);
  }

  @Test
  void overwritesAnExistingFile() {
    Path file = dir.resolve("o.safetensors");
    SafetensorsWriter.write(file, Map.of("old", tensor(new long[] {1}, 1f)), Map.of(), DType.F32);
    SafetensorsWriter.write(file, Map.of("new", tensor(new long[] {1}, 2f)), Map.of(), DType.F32);
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      assertEquals(List.of("new"), List.copyOf(f.tensors().keySet()));
      assertEquals(2f, f.readF32("new").get(0));
    }
  }

  @Test
  void dataLengthNotMatchingShapeLeavesNothingBehind() throws IOException {
    Map<String, SafetensorsWriter.Tensor> tensors = new LinkedHashMap<>();
    tensors.put("good", tensor(new long[] {2}, 1f, 2f));
    tensors.put("bad", tensor(new long[] {2, 2}, 1f, 2f, 3f));
    Path file = dir.resolve("fail.safetensors");
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> SafetensorsWriter.write(file, tensors, Map.of(), DType.BF16));
    assertTrue(e.getMessage().contains("'bad'") && e.getMessage().contains("[2, 2]")
        && e.getMessage().contains("3 values"), e.getMessage());
    assertFalse(Files.exists(file));
    assertEquals(List.of(), listDir());
  }

  @Test
  void failedRenameRemovesTheTempFile() throws IOException {
    // The target is a non-empty directory, so everything is written and only the final rename
    // fails: the temp file must not be left behind, and the directory must be untouched.
    Path target = Files.createDirectory(dir.resolve("taken.safetensors"));
    Files.writeString(target.resolve("keep"), "x");
    assertThrows(UncheckedIOException.class, () -> SafetensorsWriter.write(target,
        Map.of("w", tensor(new long[] {2}, 1f, 2f)), Map.of("k", "v"), DType.F32));
    assertEquals(List.of(target), listDir());
    assertTrue(Files.isDirectory(target));
    assertEquals("x", Files.readString(target.resolve("keep")));
  }

  @Test
  void rejectsNegativeDimsAndTheReservedName() {
    assertThrows(IllegalArgumentException.class, () -> SafetensorsWriter.write(
        dir.resolve("n.safetensors"), Map.of("w", tensor(new long[] {-1})), Map.of(), DType.F32));
    assertThrows(IllegalArgumentException.class, () -> SafetensorsWriter.write(
        dir.resolve("r.safetensors"), Map.of("__metadata__", tensor(new long[] {1}, 1f)),
        Map.of(), DType.F32));
    assertFalse(Files.exists(dir.resolve("n.safetensors")));
  }

  @Test
  void bf16RoundsToNearestEven() {
    assertEquals((short) 0x3F80, SafetensorsWriter.toBf16(1f + 0x1p-8f));
    assertEquals((short) 0x3F82, SafetensorsWriter.toBf16(1f + 3 * 0x1p-8f));
    assertEquals((short) 0x3F81, SafetensorsWriter.toBf16(1f + 0x1p-8f + 0x1p-20f));
    assertEquals((short) 0xBF81, SafetensorsWriter.toBf16(-(1f + 0x1p-8f + 0x1p-20f)));
    assertEquals((short) 0x7F80, SafetensorsWriter.toBf16(Float.MAX_VALUE));
    // A NaN whose payload sits only in the low bits must not round into an infinity.
    float lowNaN = Float.intBitsToFloat(0x7F800001);
    assertTrue(Float.isNaN(Float.intBitsToFloat(SafetensorsWriter.toBf16(lowNaN) << 16)));
    assertArrayEquals(new short[] {(short) 0x8000}, new short[] {SafetensorsWriter.toBf16(-0f)});
  }
}
