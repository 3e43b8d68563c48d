package dev.cmoe.model.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Hand-built malformed files: each must be refused on open with a message naming what is wrong. */
class SafetensorsValidationTest {

  @TempDir Path dir;

  /** Expects {@code file} refused with a message naming it and containing {@code parts}. */
  private static String refused(Path file, String... parts) {
    SafetensorsException e = assertThrows(SafetensorsException.class,
        () -> SafetensorsFile.open(file).close());
    String message = e.getMessage();
    assertTrue(message.contains(file.getFileName().toString()), message);
    for (String part : parts) {
      assertTrue(message.contains(part), "expected '" + part + "' in: " + message);
    }
    return message;
  }

  private Path header(String json, byte[] data) throws IOException {
    return Raw.file(dir, "bad.safetensors", json, data);
  }

  @Test
  void fileShorterThanEightBytes() throws IOException {
    Path file = Files.write(dir.resolve("short.safetensors"), new byte[] {1, 0, 0});
    refused(file, "3 bytes", "shorter than");
  }

  @Test
  void headerLengthZero() throws IOException {
    refused(Raw.file(dir, "zero.safetensors", 0, new byte[0], new byte[16]), "header length is 0");
  }

  @Test
  void headerLengthPastEndOfFile() throws IOException {
    byte[] json = "{}".getBytes(StandardCharsets.UTF_8);
    refused(Raw.file(dir, "eof.safetensors", 1000, json, new byte[0]), "1000", "past the end");
  }

  @Test
  void headerLengthOverTheLimit() throws IOException {
    refused(Raw.file(dir, "huge.safetensors", 200_000_000L, new byte[] {'{', '}'}, new byte[0]),
        "200000000", "exceeds");
    // Above 2^63 the u64 is negative as a Java long; it must still read as too large.
    refused(Raw.file(dir, "u64.safetensors", -1L, new byte[] {'{', '}'}, new byte[0]),
        "18446744073709551615", "exceeds");
  }

  @Test
  void headerNotUtf8() throws IOException {
    byte[] bytes = {'{', '"', (byte) 0xFF, (byte) 0xFE, '"', ':', '1', '}'};
    refused(Raw.file(dir, "utf.safetensors", bytes.length, bytes, new byte[0]), "UTF-8");
  }

  @Test
  void headerNotAJsonObject() throws IOException {
    refused(header("[1, 2]", new byte[0]), "not a JSON object");
    refused(header("{\"a\": ", new byte[0]), "not valid JSON");
    // Gson's default parser is lenient; a strict reader must refuse single quotes and comments.
    refused(header("{'w': 1}", new byte[0]), "not valid JSON");
    refused(header("{} {}", new byte[0]), "JSON");
  }

  @Test
  void duplicateTensorName() throws IOException {
    String json = "{" + Raw.entry("w", "F32", "[1]", 0, 4) + ","
        + Raw.entry("w", "F32", "[1]", 4, 8) + "}";
    refused(header(json, new byte[8]), "'w'", "twice");
  }

  @Test
  void entryNotAnObject() throws IOException {
    refused(header("{\"w\": [1, 2]}", new byte[0]), "tensor 'w'", "expected an object");
  }

  @Test
  void entryWithMissingOrExtraFields() throws IOException {
    refused(header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", new byte[4]),
        "tensor 'w'", "expected exactly");
    refused(header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], "
        + "\"extra\": 1}}", new byte[4]), "tensor 'w'", "extra");
  }

  @Test
  void entryFieldsOfTheWrongJsonType() throws IOException {
    refused(header("{\"w\": {\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 4]}}",
        new byte[4]), "tensor 'w'", "dtype is 5");
    refused(header("{\"w\": {\"dtype\": \"F32\", \"shape\": \"1\", \"data_offsets\": [0, 4]}}",
        new byte[4]), "tensor 'w'", "shape");
    refused(header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}",
        new byte[4]), "tensor 'w'", "1.5");
    refused(header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}",
        new byte[4]), "tensor 'w'", "data_offsets");
    refused(header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, \"4\"]}}",
        new byte[4]), "tensor 'w'", "data_offsets");
    refused(header("{\"w\": {\"dtype\": \"F32\", \"shape\": [99999999999999999999], "
        + "\"data_offsets\": [0, 4]}}", new byte[4]), "tensor 'w'", "64 bits");
  }

  @Test
  void metadataMustBeAnObjectOfStrings() throws IOException {
    refused(header("{\"__metadata__\": {\"total\": 5}}", new byte[0]), "__metadata__", "total");
    refused(header("{\"__metadata__\": \"x\"}", new byte[0]), "__metadata__");
  }

  @Test
  void negativeShapeDim() throws IOException {
    refused(header("{" + Raw.entry("w", "F32", "[2, -1]", 0, 0) + "}", new byte[0]),
        "tensor 'w'", "negative dim -1");
  }

  @Test
  void unknownDtype() throws IOException {
    Path file = header("{" + Raw.entry("x", "I8", "[4]", 0, 4) + "}", new byte[4]);
    String message = refused(file);
    assertEquals("unsupported safetensors dtype 'I8' for tensor 'x' in " + file, message);
  }

  @Test
  void beginAfterEnd() throws IOException {
    refused(header("{" + Raw.entry("w", "F32", "[1]", 8, 4) + "}", new byte[8]),
        "tensor 'w'", "[8, 4]");
  }

  @Test
  void endPastTheDataSection() throws IOException {
    refused(header("{" + Raw.entry("w", "F32", "[4]", 0, 16) + "}", new byte[12]),
        "tensor 'w'", "[0, 16]", "12 bytes");
  }

  @Test
  void byteLengthDoesNotMatchShape() throws IOException {
    refused(header("{" + Raw.entry("w", "F16", "[2, 3]", 0, 8) + "}", new byte[12]),
        "tensor 'w'", "needs 12 bytes", "hold 8");
  }

  @Test
  void shapeWhoseByteCountOverflows() throws IOException {
    refused(header("{" + Raw.entry("w", "F32", "[4294967296, 4294967296]", 0, 4) + "}",
        new byte[4]), "tensor 'w'", "overflows");
  }

  @Test
  void overlappingTensors() throws IOException {
    String json = "{" + Raw.entry("a", "F32", "[2]", 0, 8) + ","
        + Raw.entry("b", "F32", "[2]", 4, 12) + "}";
    refused(header(json, new byte[12]), "'a' [0, 8)", "'b' [4, 12)", "overlap");
  }

  @Test
  void aGapBetweenTensorsIsRefused() throws IOException {
    String json = "{" + Raw.entry("a", "F32", "[1]", 0, 4) + ","
        + Raw.entry("b", "F32", "[1]", 8, 12) + "}";
    refused(header(json, Raw.concat(Raw.f32(1.5f), new byte[4], Raw.f32(-2f))),
        "tensor 'b' begins at data offset 8", "end at 4", "gap of 4 bytes");
  }

  @Test
  void trailingBytesAfterTheLastTensorAreRefused() throws IOException {
    String json = "{" + Raw.entry("a", "F32", "[1]", 0, 4) + "}";
    refused(header(json, Raw.concat(Raw.f32(1.5f), new byte[3])),
        "data section is 7 bytes", "tensors hold 4", "3 bytes unaccounted for");
  }

  @Test
  void anEmptyRangeInsideAnotherTensorIsRefused() throws IOException {
    String json = "{" + Raw.entry("a", "F32", "[1]", 0, 4) + ","
        + Raw.entry("e", "F32", "[0]", 2, 2) + "}";
    refused(header(json, Raw.f32(1.5f)), "'a' [0, 4)", "'e' [2, 2)", "overlap");
  }

  @Test
  void contiguousTensorsInAnyHeaderOrderWithEmptyOnesBetweenAreRead() throws IOException {
    String json = "{" + Raw.entry("b", "F32", "[1]", 4, 8) + ","
        + Raw.entry("e", "F32", "[0]", 4, 4) + "," + Raw.entry("a", "F32", "[1]", 0, 4) + "}";
    try (SafetensorsFile f = SafetensorsFile.open(header(json, Raw.f32(1.5f, -2f)))) {
      assertEquals(List.of("b", "e", "a"), List.copyOf(f.tensors().keySet()));
      assertArrayEquals(new float[] {-2f}, toArray(f.readF32("b")));
      assertEquals(1.5f, f.readF32("a").get(0));
      assertEquals(0, f.readF32("e").limit());
    }
  }

  /**
   * The writer pads its header with spaces, so a length field one byte short still parses as
   * JSON; only the data section's exact length shows every tensor would be read one byte off.
   */
  @Test
  void aHeaderLengthOneByteShortIsRefused() throws IOException {
    Path file = dir.resolve("short-header.safetensors");
    java.util.Map<String, SafetensorsWriter.Tensor> tensors = new java.util.LinkedHashMap<>();
    tensors.put("w", new SafetensorsWriter.Tensor(new long[] {2, 2},
        FloatBuffer.wrap(new float[] {1, 2, 3, 4})));
    SafetensorsWriter.write(file, tensors, java.util.Map.of(), DType.F32);
    byte[] bytes = Files.readAllBytes(file);
    java.nio.ByteBuffer le = java.nio.ByteBuffer.wrap(bytes).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    long length = le.getLong(0);
    assertEquals(' ', bytes[(int) (8 + length - 1)], "the writer pads the header with spaces");
    le.putLong(0, length - 1);
    Files.write(file, bytes);
    refused(file, "data section is 17 bytes", "tensors hold 16");
  }

  private static float[] toArray(FloatBuffer b) {
    float[] out = new float[b.remaining()];
    b.get(out);
    return out;
  }

  @Test
  void readingAnUnknownTensorNamesItAndTheFile() throws IOException {
    Path file = header("{" + Raw.entry("a", "F32", "[1]", 0, 4) + "}", Raw.f32(1f));
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      SafetensorsException e = assertThrows(SafetensorsException.class, () -> f.readF32("nope"));
      assertTrue(e.getMessage().contains("'nope'") && e.getMessage().contains(file.toString()));
    }
  }

  @Test
  void readingAfterCloseFails() throws IOException {
    Path file = header("{" + Raw.entry("a", "F32", "[1]", 0, 4) + "}", Raw.f32(1f));
    SafetensorsFile f = SafetensorsFile.open(file);
    f.close();
    SafetensorsException e = assertThrows(SafetensorsException.class, () -> f.readF32("a"));
    assertTrue(e.getMessage().contains("closed"), e.getMessage());
  }

  @Test
  void tensorOverTwoGigabytesOpensButIsTooLargeToMap() throws IOException {
    long bytes = 600_000_000L * 4;
    String json = "{" + Raw.entry("big", "F32", "[600000000]", 0, bytes) + ","
        + Raw.entry("small", "F32", "[1]", bytes, bytes + 4) + "}";
    Path file = header(json, new byte[0]);
    try (RandomAccessFile sparse = new RandomAccessFile(file.toFile(), "rw")) {
      sparse.setLength(sparse.length() + bytes + 4); // sparse: no disk is used for the zeros
    }
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      SafetensorsException e = assertThrows(SafetensorsException.class, () -> f.readF32("big"));
      assertTrue(e.getMessage().contains("'big'") && e.getMessage().contains("too large to map"),
          e.getMessage());
      assertEquals(0f, f.readF32("small").get(0));
    }
  }
}
