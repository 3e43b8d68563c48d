package dev.cmoe.model.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointWriterTest {
  @TempDir
  Path tmp;

  private static Map<String, long[]> layout() {
    Map<String, long[]> layout = new LinkedHashMap<>();
    layout.put("a", new long[] {3, 4});
    layout.put("b", new long[] {5});
    layout.put("c", new long[] {2, 2, 2});
    layout.put("d", new long[] {7});
    return layout;
  }

  private static float[] values(int n, long seed) {
    Random r = new Random(seed);
    float[] v = new float[n];
    for (int i = 0; i < v.length; i++) {
      v[i] = (float) r.nextGaussian();
    }
    return v;
  }

  @Test
  void tensorsWrittenInAnyOrderReadBackAsTheOneFileWriterWritesThem() throws Exception {
    Map<String, long[]> layout = layout();
    Map<String, float[]> data = new LinkedHashMap<>();
    int seed = 0;
    for (Map.Entry<String, long[]> e : layout.entrySet()) {
      int n = 1;
      for (long d : e.getValue()) {
        n *= (int) d;
      }
      data.put(e.getKey(), values(n, seed++));
    }
    for (DType dtype : DType.values()) {
      Path sharded = Files.createDirectories(tmp.resolve("sharded-" + dtype));
      // 24 bytes per shard: a, (b), (c, d) in f32 shards of their own or pairs, several either way
      try (CheckpointWriter w = CheckpointWriter.create(sharded, layout, dtype, 24, Map.of("format", "pt"))) {
        for (String name : new String[] {"d", "b", "a", "c"}) {
          w.write(name, FloatBuffer.wrap(data.get(name)));
        }
        w.finish();
      }
      Path single = Files.createDirectories(tmp.resolve("single-" + dtype));
      Map<String, SafetensorsWriter.Tensor> tensors = new LinkedHashMap<>();
      data.forEach((n, v) -> tensors.put(n, new SafetensorsWriter.Tensor(layout.get(n), FloatBuffer.wrap(v))));
      SafetensorsWriter.write(single.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"), dtype);
      assertTrue(Files.isRegularFile(sharded.resolve(Checkpoint.INDEX_FILE)), dtype.toString());
      try (Checkpoint a = Checkpoint.open(sharded); Checkpoint b = Checkpoint.open(single)) {
        assertEquals(dtype, a.dtype());
        assertEquals(b.names(), java.util.Set.copyOf(a.names()));
        for (String name : b.names()) {
          assertArrayEquals(b.info(name).shape(), a.info(name).shape(), name);
          float[] want = new float[data.get(name).length];
          float[] got = new float[want.length];
          b.readF32(name).get(want);
          a.readF32(name).get(got);
          assertArrayEquals(want, got, 0f, dtype + " " + name);
        }
      }
    }
  }

  @Test
  void oneShardIsAPlainModelFileAndRawBytesAreCopiedUnchanged() throws Exception {
    Path src = Files.createDirectories(tmp.resolve("src"));
    Map<String, SafetensorsWriter.Tensor> tensors = new LinkedHashMap<>();
    layout().forEach((n, shape) -> {
      int numel = (int) SafetensorsWriter.numel(n, shape);
      tensors.put(n, new SafetensorsWriter.Tensor(shape, FloatBuffer.wrap(values(numel, n.hashCode()))));
    });
    SafetensorsWriter.write(src.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of(), DType.BF16);
    Path out = Files.createDirectories(tmp.resolve("out"));
    try (Checkpoint in = Checkpoint.open(src);
         CheckpointWriter w = CheckpointWriter.create(out, layout(), DType.BF16, 1 << 20, Map.of())) {
      for (String name : in.names()) {
        RawTensor raw = in.readRaw(name);
        w.writeRaw(name, raw);
        raw.release();
      }
      w.finish();
    }
    assertTrue(Files.isRegularFile(out.resolve(Checkpoint.SINGLE_FILE)));
    assertTrue(Files.notExists(out.resolve(Checkpoint.INDEX_FILE)));
    assertArrayEquals(Files.readAllBytes(src.resolve(Checkpoint.SINGLE_FILE)),
        Files.readAllBytes(out.resolve(Checkpoint.SINGLE_FILE)));
  }

  @Test
  void refusesWhatTheLayoutDoesNotHoldAndAnIncompleteCheckpoint() throws Exception {
    Path out = Files.createDirectories(tmp.resolve("out"));
    try (CheckpointWriter w = CheckpointWriter.create(out, layout(), DType.F32, 1 << 20, Map.of())) {
      IllegalArgumentException unknown = assertThrows(IllegalArgumentException.class,
          () -> w.write("z", FloatBuffer.wrap(new float[1])));
      assertTrue(unknown.getMessage().contains("'z' is not in the checkpoint's layout"), unknown.getMessage());
      IllegalArgumentException size = assertThrows(IllegalArgumentException.class,
          () -> w.write("b", FloatBuffer.wrap(new float[4])));
      assertTrue(size.getMessage().contains("'b' has shape [5] (5 elements) but 4 values"), size.getMessage());
      w.write("b", FloatBuffer.wrap(new float[5]));
      IllegalArgumentException twice = assertThrows(IllegalArgumentException.class,
          () -> w.write("b", FloatBuffer.wrap(new float[5])));
      assertTrue(twice.getMessage().contains("already written"), twice.getMessage());
      RawTensor wrongDtype = RawTensor.ofF32("d", FloatBuffer.wrap(new float[7]), 7);
      w.writeRaw("d", wrongDtype);
      IllegalArgumentException shape = assertThrows(IllegalArgumentException.class,
          () -> w.writeRaw("c", RawTensor.ofF32("c", FloatBuffer.wrap(new float[8]), 8)));
      assertTrue(shape.getMessage().contains("expects F32 [2, 2, 2]"), shape.getMessage());
      IllegalStateException missing = assertThrows(IllegalStateException.class, w::finish);
      assertTrue(missing.getMessage().contains("2 tensors") && missing.getMessage().contains("[a, c]"),
          missing.getMessage());
    }
  }
}
