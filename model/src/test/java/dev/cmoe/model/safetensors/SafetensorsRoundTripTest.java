package dev.cmoe.model.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsRoundTripTest {

  @TempDir Path dir;

  private static float[] values(int n, long seed) {
    Random r = new Random(seed);
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(7) - 3));
    }
    return v;
  }

  private static SafetensorsWriter.Tensor tensor(long[] shape, float... values) {
    return new SafetensorsWriter.Tensor(shape, FloatBuffer.wrap(values));
  }

  private static float[] array(FloatBuffer b) {
    assertEquals(0, b.position());
    float[] out = new float[b.remaining()];
    b.duplicate().get(out);
    return out;
  }

  private Path writeOne(String name, long[] shape, float[] data, DType dtype) {
    Path file = dir.resolve(dtype + ".safetensors");
    SafetensorsWriter.write(file,
        Map.of(name, new SafetensorsWriter.Tensor(shape, FloatBuffer.wrap(data))), Map.of(), dtype);
    return file;
  }

  @Test
  void f32RoundTripIsBitExact() {
    float[] data = values(3 * 1000, 1);
    data[0] = Float.NaN;
    data[1] = -0.0f;
    data[2] = Float.NEGATIVE_INFINITY;
    data[3] = Float.MIN_VALUE;
    data[4] = Float.MAX_VALUE;
    Path file = writeOne("w", new long[] {3, 1000}, data, DType.F32);
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      TensorInfo info = f.tensors().get("w");
      assertEquals(DType.F32, info.dtype());
      assertArrayEquals(new long[] {3, 1000}, info.shape());
      assertEquals(3000, info.numel());
      FloatBuffer read = f.readF32("w");
      assertEquals(3000, read.limit());
      float[] back = array(read);
      for (int i = 0; i < data.length; i++) {
        assertEquals(Float.floatToRawIntBits(data[i]), Float.floatToRawIntBits(back[i]), "at " + i);
      }
    }
  }

  @Test
  void f16RoundTripIsWithinHalfPrecision() {
    float[] data = values(4096, 2);
    Path file = writeOne("h", new long[] {64, 64}, data, DType.F16);
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      assertEquals(DType.F16, f.tensors().get("h").dtype());
      assertEquals(4096L * 2, f.tensors().get("h").byteLength());
      float[] back = array(f.readF32("h"));
      assertEquals(data.length, back.length);
      for (int i = 0; i < data.length; i++) {
        // 11 significant bits: relative error at most 2^-11, plus the subnormal spacing 2^-24.
        float tolerance = Math.abs(data[i]) * 0x1p-11f + 0x1p-24f;
        if (Math.abs(data[i]) < 65504) {
          assertEquals(data[i], back[i], tolerance, "at " + i);
        }
        assertEquals(Float.float16ToFloat(Float.floatToFloat16(data[i])), back[i], 0f, "at " + i);
      }
    }
  }

  @Test
  void bf16RoundTripIsWithinBf16PrecisionAndRoundsToNearestEven() throws IOException {
    float[] random = values(2000, 3);
    float[] special = {
      1f + 0x1p-8f, // exactly halfway between 1 and 1+2^-7: ties to even, 1
      1f + 3 * 0x1p-8f, // halfway between 1+2^-7 (odd) and 1+2^-6 (even): 1+2^-6
      1f + 0x1p-8f + 0x1p-20f, // just above halfway: rounds up to 1+2^-7
      -2.0f, Float.NaN, Float.MAX_VALUE
    };
    float[] data = new float[random.length + special.length];
    System.arraycopy(special, 0, data, 0, special.length);
    System.arraycopy(random, 0, data, special.length, random.length);
    Path file = writeOne("b", new long[] {data.length}, data, DType.BF16);
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      float[] back = array(f.readF32("b"));
      assertEquals(1f, back[0]);
      assertEquals(1f + 0x1p-6f, back[1]);
      assertEquals(1f + 0x1p-7f, back[2]);
      assertEquals(-2f, back[3]);
      assertTrue(Float.isNaN(back[4]), "NaN must stay NaN, got " + back[4]);
      assertEquals(Float.POSITIVE_INFINITY, back[5]);
      for (int i = special.length; i < data.length; i++) {
        // 8 significant bits, rounded: at most half an ulp, 2^-8 relative.
        assertEquals(data[i], back[i], Math.abs(data[i]) * 0x1p-8f, "at " + i);
      }
    }
    // The stored bytes themselves, so a reader and writer bug cannot cancel out: 1.0 is 0x3F80.
    ByteBuffer raw = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
    long dataStart = 8 + raw.getLong(0);
    assertEquals((short) 0x3F80, raw.getShort((int) dataStart));
    assertEquals((short) 0xC000, raw.getShort((int) dataStart + 6));
  }

  @Test
  void readerConvertsHandWrittenF16AndBf16() throws IOException {
    String json = "{" + Raw.entry("h", "F16", "[3]", 0, 6) + ","
        + Raw.entry("b", "BF16", "[3]", 6, 12) + "}";
    byte[] data = Raw.concat(Raw.u16(0x3C00, 0xC000, 0x0001), Raw.u16(0x3F80, 0xC040, 0x7F80));
    try (SafetensorsFile f = SafetensorsFile.open(Raw.file(dir, "x.safetensors", json, data))) {
      assertArrayEquals(new float[] {1f, -2f, 0x1p-24f}, array(f.readF32("h")));
      assertArrayEquals(new float[] {1f, -3f, Float.POSITIVE_INFINITY}, array(f.readF32("b")));
    }
  }

  @Test
  void metadataRoundTrips() {
    Map<String, String> meta = new LinkedHashMap<>();
    meta.put("format", "pt");
    meta.put("quoted \"<&>\"\\", "line\nbreak, unicode é 漢字");
    meta.put("empty", "");
    Path file = dir.resolve("m.safetensors");
    SafetensorsWriter.write(file, Map.of(), meta, DType.F32);
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      assertEquals(meta, f.metadata());
      assertEquals(List.copyOf(meta.keySet()), List.copyOf(f.metadata().keySet()));
      assertTrue(f.tensors().isEmpty());
    }
  }

  @Test
  void scalarAndEmptyTensorsRoundTrip() {
    Map<String, SafetensorsWriter.Tensor> tensors = new LinkedHashMap<>();
    tensors.put("scalar", tensor(new long[0], 7.5f));
    tensors.put("empty", tensor(new long[] {0, 3}));
    tensors.put("after", tensor(new long[] {2}, 1, 2));
    for (DType dtype : DType.values()) {
      Path file = dir.resolve("s-" + dtype + ".safetensors");
      SafetensorsWriter.write(file, tensors, null, dtype);
      try (SafetensorsFile f = SafetensorsFile.open(file)) {
        TensorInfo scalar = f.tensors().get("scalar");
        assertArrayEquals(new long[0], scalar.shape());
        assertEquals(1, scalar.numel());
        assertEquals(dtype.byteSize(), scalar.byteLength());
        assertArrayEquals(new float[] {7.5f}, array(f.readF32("scalar")));
        TensorInfo empty = f.tensors().get("empty");
        assertArrayEquals(new long[] {0, 3}, empty.shape());
        assertEquals(0, empty.numel());
        assertEquals(empty.begin(), empty.end());
        assertEquals(0, f.readF32("empty").limit());
        assertArrayEquals(new float[] {1, 2}, array(f.readF32("after")));
        assertEquals(Map.of(), f.metadata());
      }
    }
  }

  @Test
  void tensorsKeepTheWrittenOrderAndAreContiguous() {
    Map<String, SafetensorsWriter.Tensor> tensors = new LinkedHashMap<>();
    for (String name : List.of("zeta", "alpha", "mid", "beta")) {
      tensors.put(name, tensor(new long[] {3}, 1, 2, 3));
    }
    Path file = dir.resolve("o.safetensors");
    SafetensorsWriter.write(file, tensors, Map.of(), DType.F16);
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      assertEquals(List.of("zeta", "alpha", "mid", "beta"), List.copyOf(f.tensors().keySet()));
      long expectedBegin = 0;
      for (TensorInfo t : f.tensors().values()) {
        assertEquals(expectedBegin, t.begin(), t.name());
        expectedBegin = t.end();
      }
    }
  }

  @Test
  void writerReadsFromPositionToLimitAndLeavesTheSourceUntouched() {
    FloatBuffer src = FloatBuffer.wrap(new float[] {9, 1, 2, 9});
    src.position(1).limit(3);
    Path file = dir.resolve("p.safetensors");
    SafetensorsWriter.write(file, Map.of("t", new SafetensorsWriter.Tensor(new long[] {2}, src)),
        Map.of(), DType.F32);
    assertEquals(1, src.position());
    assertEquals(3, src.limit());
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      assertArrayEquals(new float[] {1, 2}, array(f.readF32("t")));
    }
  }
}
