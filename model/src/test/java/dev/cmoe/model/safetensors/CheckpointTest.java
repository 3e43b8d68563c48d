package dev.cmoe.model.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {

  @TempDir Path dir;

  private static SafetensorsWriter.Tensor tensor(long[] shape, float... values) {
    return new SafetensorsWriter.Tensor(shape, FloatBuffer.wrap(values));
  }

  private static float[] array(FloatBuffer b) {
    float[] out = new float[b.remaining()];
    b.duplicate().get(out);
    return out;
  }

  /** A tiny model: embed [2,3], layer0 [3], layer1 [2,2], norm scalar. */
  private static Map<String, SafetensorsWriter.Tensor> model() {
    Map<String, SafetensorsWriter.Tensor> t = new LinkedHashMap<>();
    t.put("embed", tensor(new long[] {2, 3}, 1, 2, 3, 4, 5, 6));
    t.put("layer0", tensor(new long[] {3}, 7, 8, 9));
    t.put("layer1", tensor(new long[] {2, 2}, -1, -2, -3, -4));
    t.put("norm", tensor(new long[0], 0.5f));
    return t;
  }

  private static Map<String, SafetensorsWriter.Tensor> only(String... names) {
    Map<String, SafetensorsWriter.Tensor> all = model();
    Map<String, SafetensorsWriter.Tensor> some = new LinkedHashMap<>();
    for (String n : names) {
      some.put(n, all.get(n));
    }
    return some;
  }

  private Path sharded(String weightMap) throws IOException {
    Path d = Files.createDirectories(dir.resolve("sharded"));
    SafetensorsWriter.write(d.resolve("model-00001-of-00002.safetensors"),
        only("embed", "layer0"), Map.of("format", "pt"), DType.F32);
    SafetensorsWriter.write(d.resolve("model-00002-of-00002.safetensors"),
        only("layer1", "norm"), Map.of("format", "pt"), DType.F32);
    Files.writeString(d.resolve(Checkpoint.INDEX_FILE),
        "{\"metadata\": {\"total_size\": 56}, \"weight_map\": {" + weightMap + "}}");
    return d;
  }

  private static final String GOOD_MAP = "\"embed\": \"model-00001-of-00002.safetensors\","
      + "\"layer0\": \"model-00001-of-00002.safetensors\","
      + "\"layer1\": \"model-00002-of-00002.safetensors\","
      + "\"norm\": \"model-00002-of-00002.safetensors\"";

  private static SafetensorsException refused(Path checkpointDir, String... parts) {
    SafetensorsException e = assertThrows(SafetensorsException.class,
        () -> Checkpoint.open(checkpointDir).close());
    for (String part : parts) {
      assertTrue(e.getMessage().contains(part), "expected '" + part + "' in: " + e.getMessage());
    }
    return e;
  }

  @Test
  void aCheckpointThatMixesDtypesIsRefusedNamingTheTensor() throws IOException {
    Path d = Files.createDirectories(dir.resolve("mixed"));
    SafetensorsWriter.write(d.resolve("model-00001-of-00002.safetensors"),
        only("embed", "layer0"), Map.of("format", "pt"), DType.BF16);
    SafetensorsWriter.write(d.resolve("model-00002-of-00002.safetensors"),
        only("layer1", "norm"), Map.of("format", "pt"), DType.F32);
    Files.writeString(d.resolve(Checkpoint.INDEX_FILE), "{\"weight_map\": {" + GOOD_MAP + "}}");
    try (Checkpoint c = Checkpoint.open(d)) {
      SafetensorsException e = assertThrows(SafetensorsException.class, c::dtype);
      assertTrue(e.getMessage().contains("'layer1' is F32") && e.getMessage().contains("'embed' is BF16"),
          e.getMessage());
    }
    Path uniform = sharded(GOOD_MAP);
    try (Checkpoint c = Checkpoint.open(uniform)) {
      assertEquals(DType.F32, c.dtype());
    }
  }

  @Test
  void singleFileCheckpoint() {
    Path d = dir.resolve("single");
    assertDoesNotThrow(() -> Files.createDirectories(d));
    SafetensorsWriter.write(d.resolve(Checkpoint.SINGLE_FILE), model(), Map.of("format", "pt"),
        DType.F32);
    try (Checkpoint c = Checkpoint.open(d)) {
      assertEquals(List.of("embed", "layer0", "layer1", "norm"), List.copyOf(c.names()));
      assertEquals(Map.of("format", "pt"), c.metadata());
      assertTrue(c.has("norm"));
      assertFalse(c.has("nope"));
      assertArrayEquals(new long[] {2, 3}, c.info("embed").shape());
      assertArrayEquals(new float[] {-1, -2, -3, -4}, array(c.readF32("layer1")));
      assertThrows(SafetensorsException.class, () -> c.readF32("nope"));
    }
  }

  @Test
  void shardedCheckpointReadsTheSameAsOneFile() throws IOException {
    Path single = Files.createDirectories(dir.resolve("single"));
    SafetensorsWriter.write(single.resolve(Checkpoint.SINGLE_FILE), model(), Map.of(), DType.F32);
    try (Checkpoint one = Checkpoint.open(single);
        Checkpoint two = Checkpoint.open(sharded(GOOD_MAP))) {
      assertEquals(one.names(), two.names());
      for (String name : one.names()) {
        assertArrayEquals(one.info(name).shape(), two.info(name).shape(), name);
        assertArrayEquals(array(one.readF32(name)), array(two.readF32(name)), name);
      }
      assertEquals(Map.of("total_size", "56"), two.metadata());
      // Offsets are per shard: layer1 is first in the second shard.
      assertEquals(0, two.info("layer1").begin());
    }
  }

  @Test
  void indexPointingToAMissingShard() throws IOException {
    Path d = sharded(GOOD_MAP.replace(
        "\"norm\": \"model-00002-of-00002", "\"norm\": \"model-00003-of-00002"));
    refused(d, "'norm'", "model-00003-of-00002.safetensors", "does not exist");
  }

  @Test
  void indexMappingATensorToAShardThatLacksIt() throws IOException {
    Path d = sharded(GOOD_MAP.replace("\"layer1\": \"model-00002", "\"layer1\": \"model-00001"));
    refused(d, "'layer1'", "model-00001-of-00002.safetensors", "does not hold it");
  }

  @Test
  void indexNamingATensorNoShardHolds() throws IOException {
    Path d = sharded(GOOD_MAP + ", \"ghost\": \"model-00001-of-00002.safetensors\"");
    refused(d, "'ghost'", "model-00001-of-00002.safetensors", "does not hold it");
  }

  @Test
  void tensorHeldByTwoShards() throws IOException {
    Path d = sharded(GOOD_MAP);
    SafetensorsWriter.write(d.resolve("model-00002-of-00002.safetensors"),
        only("layer1", "norm", "embed"), Map.of(), DType.F32);
    refused(d, "'embed'", "two shards", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors");
  }

  @Test
  void shardTensorMissingFromTheIndex() throws IOException {
    Path d = sharded(GOOD_MAP.replace(",\"norm\": \"model-00002-of-00002.safetensors\"", ""));
    refused(d, "'norm'", "model-00002-of-00002.safetensors", "not listed");
  }

  @Test
  void indexMayNotPointOutsideTheDirectory() throws IOException {
    Path d = sharded(GOOD_MAP.replace("\"norm\": \"model-00002-of-00002.safetensors\"",
        "\"norm\": \"../model-00002-of-00002.safetensors\""));
    refused(d, "'norm'", "not a file name");
  }

  @Test
  void malformedIndex() throws IOException {
    Path d = sharded(GOOD_MAP);
    Files.writeString(d.resolve(Checkpoint.INDEX_FILE), "{\"weight_map\": [\"embed\"]}");
    refused(d, Checkpoint.INDEX_FILE, "weight_map");
    Files.writeString(d.resolve(Checkpoint.INDEX_FILE), "{\"weight_map\": {\"embed\": 1}}");
    refused(d, Checkpoint.INDEX_FILE, "'embed'");
    Files.writeString(d.resolve(Checkpoint.INDEX_FILE), "{\"weight_map\": {");
    refused(d, Checkpoint.INDEX_FILE, "not valid JSON");
  }

  @Test
  void malformedShardIsReportedByItsName() throws IOException {
    Path d = sharded(GOOD_MAP);
    Files.write(d.resolve("model-00002-of-00002.safetensors"), new byte[] {1, 2});
    refused(d, "model-00002-of-00002.safetensors", "shorter than");
  }

  @Test
  void emptyDirectoryIsNotACheckpoint() throws IOException {
    Path d = Files.createDirectories(dir.resolve("empty"));
    refused(d, d.toString(), Checkpoint.SINGLE_FILE, Checkpoint.INDEX_FILE);
    refused(d.resolve("absent"), "absent", "not a checkpoint directory");
  }

  @Test
  void requireAcceptsTheRightShape() throws IOException {
    try (Checkpoint c = Checkpoint.open(sharded(GOOD_MAP))) {
      assertDoesNotThrow(() -> c.require("embed", 2, 3));
      assertDoesNotThrow(() -> c.require("norm"));
    }
  }

  @Test
  void requireReportsAMissingTensor() throws IOException {
    try (Checkpoint c = Checkpoint.open(sharded(GOOD_MAP))) {
      SafetensorsException e = assertThrows(SafetensorsException.class,
          () -> c.require("lm_head", 5, 3));
      String m = e.getMessage();
      assertTrue(m.contains("missing tensor 'lm_head'") && m.contains("[5, 3]")
          && m.contains(Checkpoint.INDEX_FILE), m);
    }
  }

  @Test
  void requireReportsAWrongShape() throws IOException {
    try (Checkpoint c = Checkpoint.open(sharded(GOOD_MAP))) {
      SafetensorsException e = assertThrows(SafetensorsException.class,
          () -> c.require("layer1", 2, 3));
      String m = e.getMessage();
      assertTrue(m.contains("'layer1'") && m.contains("model-00002-of-00002.safetensors")
          && m.contains("has shape [2, 2]") && m.contains("expected [2, 3]"), m);
      // A scalar is not a one-element vector.
      assertThrows(SafetensorsException.class, () -> c.require("norm", 1));
    }
  }

  @Test
  void closeClosesEveryShard() throws IOException {
    Checkpoint c = Checkpoint.open(sharded(GOOD_MAP));
    c.close();
    for (String name : List.of("embed", "norm")) {
      SafetensorsException e = assertThrows(SafetensorsException.class, () -> c.readF32(name));
      assertTrue(e.getMessage().contains("closed"), e.getMessage());
    }
  }
}
