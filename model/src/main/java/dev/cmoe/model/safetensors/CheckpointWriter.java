package dev.cmoe.model.safetensors;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * Writes a checkpoint in the Hugging Face layout one tensor at a time, in any order, holding no
 * more than one tensor in memory: the names and shapes are fixed up front, so every shard's header
 * and every tensor's offset are known before the first value is written. A 7B model is carved or
 * synthesised this way in the memory of one layer. It writes into a directory the caller makes
 * appear atomically ({@link dev.cmoe.model.io.AtomicDir}); {@link #finish} fails if a tensor is
 * missing, so an interrupted writer never yields a checkpoint that looks whole.
 */
public final class CheckpointWriter implements AutoCloseable {
  private record Slot(int shard, long offset, long[] shape) {}

  private final DType dtype;
  private final List<FileChannel> shards = new ArrayList<>();
  private final List<Long> dataStarts = new ArrayList<>();
  private final Map<String, Slot> slots = new LinkedHashMap<>();
  private final Map<String, String> weightMap = new TreeMap<>();
  private final Set<String> written = new HashSet<>();
  private final Path dir;
  private final long totalBytes;
  private final ByteBuffer chunk =
      ByteBuffer.allocateDirect(SafetensorsWriter.CHUNK_BYTES).order(ByteOrder.LITTLE_ENDIAN);
  private boolean finished;

  private CheckpointWriter(Path dir, Map<String, long[]> layout, DType dtype, long shardBytes,
      Map<String, String> metadata) throws IOException {
    this.dir = dir;
    this.dtype = dtype;
    List<Map<String, long[]>> plan = plan(layout, dtype, shardBytes);
    long total = 0;
    try {
      total = openShards(plan, metadata);
    } catch (IOException | RuntimeException e) {
      close();
      throw e;
    }
    this.totalBytes = total;
  }

  private long openShards(List<Map<String, long[]>> plan, Map<String, String> metadata) throws IOException {
    long total = 0;
    for (int k = 0; k < plan.size(); k++) {
      String file = plan.size() == 1 ? Checkpoint.SINGLE_FILE
          : String.format(Locale.ROOT, "model-%05d-of-%05d.safetensors", k + 1, plan.size());
      Map<String, Long> offsets = new LinkedHashMap<>();
      byte[] header = SafetensorsWriter.header(plan.get(k), metadata, dtype, offsets);
      FileChannel out = FileChannel.open(dir.resolve(file), StandardOpenOption.CREATE_NEW,
          StandardOpenOption.WRITE);
      shards.add(out);
      ByteBuffer length = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      SafetensorsWriter.writeFully(out, length.putLong(0, header.length));
      SafetensorsWriter.writeFully(out, ByteBuffer.wrap(header));
      dataStarts.add(8L + header.length);
      for (Map.Entry<String, long[]> e : plan.get(k).entrySet()) {
        slots.put(e.getKey(), new Slot(k, offsets.get(e.getKey()), e.getValue()));
        weightMap.put(e.getKey(), file);
        total += bytes(e.getValue(), dtype);
      }
    }
    return total;
  }

  /**
   * Starts a checkpoint of the tensors in {@code layout} (checkpoint order: shards are cut along
   * it, each of at most {@code shardBytes} unless one tensor alone is larger) in {@code dir},
   * which must exist and hold no safetensors file yet; one shard is written as model.safetensors,
   * several with model.safetensors.index.json.
   */
  public static CheckpointWriter create(Path dir, Map<String, long[]> layout, DType dtype,
      long shardBytes, Map<String, String> metadata) {
    if (layout.isEmpty()) {
      throw new IllegalArgumentException("a checkpoint needs at least one tensor");
    }
    try {
      return new CheckpointWriter(dir, layout, dtype, shardBytes, metadata);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create the checkpoint in " + dir + ": " + e, e);
    }
  }

  /** Tensors in checkpoint order, cut into shards of at most {@code shardBytes} (a larger tensor gets its own). */
  public static List<Map<String, long[]>> plan(Map<String, long[]> layout, DType dtype, long shardBytes) {
    if (shardBytes <= 0) {
      throw new IllegalArgumentException("shard size must be positive, got " + shardBytes);
    }
    List<Map<String, long[]>> plan = new ArrayList<>();
    Map<String, long[]> current = new LinkedHashMap<>();
    long size = 0;
    for (Map.Entry<String, long[]> e : layout.entrySet()) {
      long b = bytes(e.getValue(), dtype);
      if (!current.isEmpty() && size + b > shardBytes) {
        plan.add(current);
        current = new LinkedHashMap<>();
        size = 0;
      }
      current.put(e.getKey(), e.getValue());
      size += b;
    }
    plan.add(current);
    return plan;
  }

  /** The dtype every tensor is stored in. */
  public DType dtype() {
    return dtype;
  }

  /** Writes {@code name}'s float32 values, rounded to the checkpoint's dtype as {@link SafetensorsWriter} rounds. */
  public void write(String name, FloatBuffer values) {
    Slot slot = claim(name);
    long numel = SafetensorsWriter.numel(name, slot.shape());
    if (values.remaining() != numel) {
      throw new IllegalArgumentException("tensor '" + name + "' has shape " + Arrays.toString(slot.shape())
          + " (" + numel + " elements) but " + values.remaining() + " values");
    }
    FileChannel out = at(slot);
    try {
      SafetensorsWriter.writeData(out, values.duplicate(), dtype, chunk);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write tensor '" + name + "' to " + dir + ": " + e, e);
    }
    written.add(name);
  }

  /** Copies {@code raw}'s stored bytes unchanged; its dtype and shape must be the planned ones. */
  public void writeRaw(String name, RawTensor raw) {
    Slot slot = claim(name);
    if (raw.dtype() != dtype || !Arrays.equals(raw.shape(), slot.shape())) {
      throw new IllegalArgumentException("tensor '" + name + "' is " + raw.dtype() + " " + Arrays.toString(raw.shape())
          + ", the checkpoint expects " + dtype + " " + Arrays.toString(slot.shape()));
    }
    FileChannel out = at(slot);
    try {
      SafetensorsWriter.writeFully(out, raw.bytes().duplicate());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write tensor '" + name + "' to " + dir + ": " + e, e);
    }
    written.add(name);
  }

  private Slot claim(String name) {
    if (finished) {
      throw new IllegalStateException("the checkpoint in " + dir + " is finished");
    }
    Slot slot = slots.get(name);
    if (slot == null) {
      throw new IllegalArgumentException("tensor '" + name + "' is not in the checkpoint's layout");
    }
    if (written.contains(name)) {
      throw new IllegalArgumentException("tensor '" + name + "' was already written");
    }
    return slot;
  }

  private FileChannel at(Slot slot) {
    FileChannel out = shards.get(slot.shard());
    try {
      out.position(dataStarts.get(slot.shard()) + slot.offset());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot seek in a shard of " + dir + ": " + e, e);
    }
    return out;
  }

  /**
   * Checks every planned tensor was written, syncs the shards and writes the index when there are
   * several; the checkpoint is complete on return.
   */
  public void finish() {
    if (written.size() != slots.size()) {
      List<String> missing = slots.keySet().stream().filter(n -> !written.contains(n)).limit(5).toList();
      throw new IllegalStateException((slots.size() - written.size()) + " tensors of the checkpoint in " + dir
          + " were never written, e.g. " + missing);
    }
    try {
      for (FileChannel out : shards) {
        out.force(true);
      }
      if (shards.size() > 1) {
        JsonObject index = new JsonObject();
        JsonObject meta = new JsonObject();
        meta.addProperty("total_size", totalBytes);
        index.add("metadata", meta);
        JsonObject map = new JsonObject();
        weightMap.forEach(map::addProperty);
        index.add("weight_map", map);
        Files.writeString(dir.resolve(Checkpoint.INDEX_FILE),
            new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(index) + "\n",
            StandardCharsets.UTF_8);
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot finish the checkpoint in " + dir + ": " + e, e);
    }
    finished = true;
  }

  private static long bytes(long[] shape, DType dtype) {
    long n = dtype.byteSize();
    for (long d : shape) {
      n = Math.multiplyExact(n, d);
    }
    return n;
  }

  /** Closes the shard files; an unfinished checkpoint stays incomplete for the caller's staging to discard. */
  @Override
  public void close() {
    IOException first = null;
    for (FileChannel out : shards) {
      try {
        out.close();
      } catch (IOException e) {
        if (first == null) {
          first = e;
        }
      }
    }
    if (first != null && finished) {
      throw new UncheckedIOException("cannot close the checkpoint in " + dir + ": " + first, first);
    }
  }
}
