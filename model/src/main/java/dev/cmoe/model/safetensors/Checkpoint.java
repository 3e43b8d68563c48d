package dev.cmoe.model.safetensors;

import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A checkpoint directory as Hugging Face lays it out: one model.safetensors, or shards listed by
 * model.safetensors.index.json ({@code {"metadata":{...},"weight_map":{tensor: file}}}). It hides
 * the sharding so callers ask for tensors by name, and checks the index against the shards up
 * front so a stale or hand-edited index fails at open, not halfway through loading a model.
 */
public final class Checkpoint implements AutoCloseable {

  public static final String SINGLE_FILE = "model.safetensors";
  public static final String INDEX_FILE = "model.safetensors.index.json";

  private final Path dir;
  /** What messages call the checkpoint: the index file, or the single file. */
  private final Path source;
  /** Tensor name -> the open shard holding it, in weight_map (or file) order. */
  private final Map<String, SafetensorsFile> owners;
  private final List<SafetensorsFile> shards;
  private final Map<String, String> metadata;

  private Checkpoint(Path dir, Path source, Map<String, SafetensorsFile> owners,
      List<SafetensorsFile> shards, Map<String, String> metadata) {
    this.dir = dir;
    this.source = source;
    this.owners = Collections.unmodifiableMap(owners);
    this.shards = List.copyOf(shards);
    this.metadata = Collections.unmodifiableMap(metadata);
  }

  /**
   * Opens the checkpoint in {@code dir}, preferring the index when both layouts are present (as
   * transformers does). Every shard is opened and validated; the index must map each tensor to a
   * shard that holds it, and every tensor a shard holds must be mapped to exactly that shard.
   */
  public static Checkpoint open(Path dir) {
    if (!Files.isDirectory(dir)) {
      throw new SafetensorsException(dir + ": not a checkpoint directory");
    }
    Path index = dir.resolve(INDEX_FILE);
    if (Files.exists(index)) {
      return openSharded(dir, index);
    }
    Path single = dir.resolve(SINGLE_FILE);
    if (Files.exists(single)) {
      SafetensorsFile file = SafetensorsFile.open(single);
      Map<String, SafetensorsFile> owners = new LinkedHashMap<>();
      file.tensors().keySet().forEach(name -> owners.put(name, file));
      return new Checkpoint(dir, single, owners, List.of(file), file.metadata());
    }
    throw new SafetensorsException(dir + ": has neither " + SINGLE_FILE + " nor " + INDEX_FILE);
  }

  private static Checkpoint openSharded(Path dir, Path index) {
    JsonObject root = Json.parseObject(readIndex(index), index.toString());
    Map<String, String> weightMap = weightMap(root, index);
    Map<String, String> metadata = indexMetadata(root, index);
    Map<String, SafetensorsFile> byFile = new LinkedHashMap<>();
    try {
      Map<String, SafetensorsFile> owners = new LinkedHashMap<>();
      for (Map.Entry<String, String> e : weightMap.entrySet()) {
        String tensor = e.getKey();
        String fileName = e.getValue();
        SafetensorsFile shard = byFile.get(fileName);
        if (shard == null) {
          Path shardPath = shardPath(dir, index, tensor, fileName);
          if (!Files.exists(shardPath)) {
            throw new SafetensorsException(index + " maps tensor '" + tensor
                + "' to shard " + shardPath + ", which does not exist");
          }
          shard = SafetensorsFile.open(shardPath);
          byFile.put(fileName, shard);
        }
        if (!shard.tensors().containsKey(tensor)) {
          throw new SafetensorsException(index + " maps tensor '" + tensor + "' to shard "
              + shard.path() + ", which does not hold it");
        }
        owners.put(tensor, shard);
      }
      // The reverse direction: a tensor the index does not route to its shard is either held
      // twice (which copy is real?) or silently invisible; both mean the index is stale.
      for (SafetensorsFile shard : byFile.values()) {
        for (String tensor : shard.tensors().keySet()) {
          SafetensorsFile owner = owners.get(tensor);
          if (owner == null) {
            throw new SafetensorsException("tensor '" + tensor + "' in shard " + shard.path()
                + " is not listed in " + index);
          }
          if (owner != shard) {
            throw new SafetensorsException("tensor '" + tensor + "' is in two shards, "
                + owner.path() + " and " + shard.path() + " (" + index + ")");
          }
        }
      }
      return new Checkpoint(dir, index, owners, new ArrayList<>(byFile.values()), metadata);
    } catch (RuntimeException | Error e) {
      closeAll(byFile.values(), e);
      throw e;
    }
  }

  private static String readIndex(Path index) {
    try {
      long size = Files.size(index);
      if (size > Header.MAX_HEADER_BYTES) {
        throw new SafetensorsException(index + ": " + size + " bytes exceeds the limit of "
            + Header.MAX_HEADER_BYTES);
      }
      // Strict decoding: a mangled index should fail here, not map tensors to garbled names.
      return StandardCharsets.UTF_8.newDecoder()
          .decode(ByteBuffer.wrap(Files.readAllBytes(index))).toString();
    } catch (CharacterCodingException e) {
      throw new SafetensorsException(index + ": not valid UTF-8", e);
    } catch (IOException e) {
      throw new SafetensorsException(index + ": cannot read: " + e, e);
    }
  }

  private static Map<String, String> weightMap(JsonObject root, Path index) {
    if (!(root.get("weight_map") instanceof JsonObject map)) {
      throw new SafetensorsException(index + ": weight_map is "
          + Json.describe(root.get("weight_map")) + ", expected an object");
    }
    Map<String, String> weightMap = new LinkedHashMap<>();
    for (Map.Entry<String, JsonElement> e : map.entrySet()) {
      if (!(e.getValue() instanceof JsonPrimitive p && p.isString())) {
        throw new SafetensorsException(index + ": weight_map entry for tensor '" + e.getKey()
            + "' is " + Json.describe(e.getValue()) + ", expected a file name");
      }
      weightMap.put(e.getKey(), p.getAsString());
    }
    return weightMap;
  }

  /**
   * The index's metadata as strings: transformers writes numbers there ({@code total_size}), so
   * primitives become their text and anything nested its JSON.
   */
  private static Map<String, String> indexMetadata(JsonObject root, Path index) {
    JsonElement value = root.get("metadata");
    Map<String, String> metadata = new LinkedHashMap<>();
    if (value == null || value instanceof JsonNull) {
      return metadata;
    }
    if (!(value instanceof JsonObject object)) {
      throw new SafetensorsException(index + ": metadata is " + Json.describe(value)
          + ", expected an object");
    }
    for (Map.Entry<String, JsonElement> e : object.entrySet()) {
      JsonElement v = e.getValue();
      metadata.put(e.getKey(), v instanceof JsonPrimitive p ? p.getAsString() : v.toString());
    }
    return metadata;
  }

  /** Shards must be plain file names in the checkpoint directory, never a path out of it. */
  private static Path shardPath(Path dir, Path index, String tensor, String fileName) {
    try {
      Path name = Path.of(fileName);
      if (name.getNameCount() == 1 && !name.isAbsolute()
          && !fileName.equals(".") && !fileName.equals("..") && !fileName.isEmpty()) {
        return dir.resolve(name);
      }
    } catch (InvalidPathException e) {
      // reported below
    }
    throw new SafetensorsException(index + " maps tensor '" + tensor + "' to '" + fileName
        + "', which is not a file name in " + dir);
  }

  /** Closes every file even if some fail; failures ride on {@code primary}, else are thrown. */
  private static void closeAll(Iterable<SafetensorsFile> files, Throwable primary) {
    RuntimeException first = null;
    for (SafetensorsFile f : files) {
      try {
        f.close();
      } catch (RuntimeException e) {
        if (primary != null) {
          primary.addSuppressed(e);
        } else if (first == null) {
          first = e;
        } else {
          first.addSuppressed(e);
        }
      }
    }
    if (first != null) {
      throw first;
    }
  }

  /** All tensor names, in index (or file) order. */
  public Set<String> names() {
    return owners.keySet();
  }

  public boolean has(String name) {
    return owners.containsKey(name);
  }

  /** The tensor's header entry; offsets are relative to its own shard's data section. */
  public TensorInfo info(String name) {
    return owner(name).tensors().get(name);
  }

  /** The tensor as float32; see {@link SafetensorsFile#readF32}. */
  public FloatBuffer readF32(String name) {
    return owner(name).readF32(name);
  }

  /** The tensor's stored bytes; see {@link SafetensorsFile#readRaw}. */
  public RawTensor readRaw(String name) {
    return owner(name).readRaw(name);
  }

  /**
   * The one dtype every tensor is stored in. A model's weights are held in the dtype they are
   * stored in, so a checkpoint that mixes them (an F32 norm among BF16 projections) is refused,
   * naming the first tensor that differs, rather than silently widened or narrowed.
   *
   * @throws SafetensorsException if the checkpoint is empty or mixes dtypes
   */
  public DType dtype() {
    DType first = null;
    String firstName = null;
    for (Map.Entry<String, SafetensorsFile> e : owners.entrySet()) {
      DType d = e.getValue().tensors().get(e.getKey()).dtype();
      if (first == null) {
        first = d;
        firstName = e.getKey();
      } else if (d != first) {
        throw new SafetensorsException("mixed dtypes in " + source + ": tensor '" + e.getKey() + "' is " + d
            + " but '" + firstName + "' is " + first + "; a checkpoint must store every tensor in one dtype");
      }
    }
    if (first == null) {
      throw new SafetensorsException(source + " holds no tensors");
    }
    return first;
  }

  /**
   * Checks the checkpoint against what a model config expects, so a wrong or truncated checkpoint
   * is reported by name and shape instead of failing later inside a matmul.
   *
   * @throws SafetensorsException naming the file, the tensor, the expected and the actual shape
   */
  public void require(String name, long... shape) {
    SafetensorsFile owner = owners.get(name);
    if (owner == null) {
      throw new SafetensorsException("missing tensor '" + name + "' (expected shape "
          + Arrays.toString(shape) + ") in " + source);
    }
    long[] actual = owner.tensors().get(name).shape();
    if (!Arrays.equals(actual, shape)) {
      throw new SafetensorsException("tensor '" + name + "' in " + owner.path() + " has shape "
          + Arrays.toString(actual) + ", expected " + Arrays.toString(shape));
    }
  }

  /** The index's metadata for a sharded checkpoint, else the single file's __metadata__. */
  public Map<String, String> metadata() {
    return metadata;
  }

  public Path dir() {
    return dir;
  }

  private SafetensorsFile owner(String name) {
    SafetensorsFile owner = owners.get(name);
    if (owner == null) {
      throw new SafetensorsException("no tensor '" + name + "' in " + source);
    }
    return owner;
  }

  @Override
  public void close() {
    closeAll(shards, null);
  }

  @Override
  public String toString() {
    return "Checkpoint[" + source + ", " + owners.size() + " tensors]";
  }
}
