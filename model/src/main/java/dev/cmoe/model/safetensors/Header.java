package dev.cmoe.model.safetensors;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.CharBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The validated header of one safetensors file. Parsing checks every entry and every byte range
 * against the file size before anything is returned, so a reader never maps or trusts a range the
 * header merely claims.
 */
final class Header {

  /** The reference implementation's limit; also bounds what a hostile length can allocate. */
  static final long MAX_HEADER_BYTES = 100_000_000L;

  static final String METADATA_KEY = "__metadata__";
  private static final Set<String> FIELDS = Set.of("dtype", "shape", "data_offsets");

  final Map<String, String> metadata;
  /** Header order, which is the order writers lay tensors out in. */
  final Map<String, TensorInfo> tensors;
  /** Absolute file offset of the first data byte: 8 + header length. */
  final long dataStart;

  private Header(Map<String, String> metadata, Map<String, TensorInfo> tensors, long dataStart) {
    this.metadata = Collections.unmodifiableMap(metadata);
    this.tensors = Collections.unmodifiableMap(tensors);
    this.dataStart = dataStart;
  }

  static Header read(FileChannel channel, Path file) throws IOException {
    long size = channel.size();
    if (size < 8) {
      throw new SafetensorsException(
          file + ": file is " + size + " bytes, shorter than the 8-byte header length");
    }
    ByteBuffer lengthBytes = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
    readFully(channel, lengthBytes, 0, file);
    long length = lengthBytes.getLong(0);
    // The length is an unsigned u64: anything above Long.MAX_VALUE reads as negative here.
    if (length == 0) {
      throw new SafetensorsException(file + ": header length is 0");
    }
    if (length < 0 || length > MAX_HEADER_BYTES) {
      throw new SafetensorsException(file + ": header length " + Long.toUnsignedString(length)
          + " exceeds the limit of " + MAX_HEADER_BYTES + " bytes");
    }
    if (length > size - 8) {
      throw new SafetensorsException(file + ": header length " + length
          + " runs past the end of the file (" + size + " bytes)");
    }
    ByteBuffer headerBytes = ByteBuffer.allocate((int) length);
    readFully(channel, headerBytes, 8, file);
    String text = decodeUtf8(headerBytes.flip(), file);
    JsonObject root = Json.parseObject(text, "header of " + file);
    return parse(root, file, 8 + length, size - 8 - length);
  }

  private static void readFully(FileChannel channel, ByteBuffer into, long position, Path file)
      throws IOException {
    while (into.hasRemaining()) {
      int n = channel.read(into, position + into.position());
      if (n < 0) {
        throw new SafetensorsException(file + ": file ended while reading the header");
      }
    }
  }

  private static String decodeUtf8(ByteBuffer bytes, Path file) {
    try {
      CharBuffer chars = StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(bytes);
      return chars.toString();
    } catch (CharacterCodingException e) {
      throw new SafetensorsException(file + ": header is not valid UTF-8", e);
    }
  }

  private static Header parse(JsonObject root, Path file, long dataStart, long dataLength) {
    Map<String, String> metadata = new LinkedHashMap<>();
    Map<String, TensorInfo> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, JsonElement> e : root.entrySet()) {
      if (e.getKey().equals(METADATA_KEY)) {
        metadata = parseMetadata(e.getValue(), file);
      } else {
        tensors.put(e.getKey(), parseEntry(e.getKey(), e.getValue(), file, dataLength));
      }
    }
    checkLayout(tensors.values(), file, dataLength);
    return new Header(metadata, tensors, dataStart);
  }

  private static Map<String, String> parseMetadata(JsonElement value, Path file) {
    if (!(value instanceof JsonObject object)) {
      throw new SafetensorsException(file + ": " + METADATA_KEY + " is "
          + Json.describe(value) + ", expected an object of strings");
    }
    Map<String, String> metadata = new LinkedHashMap<>();
    for (Map.Entry<String, JsonElement> e : object.entrySet()) {
      if (!(e.getValue() instanceof JsonPrimitive p && p.isString())) {
        throw new SafetensorsException(file + ": " + METADATA_KEY + " value for '" + e.getKey()
            + "' is " + Json.describe(e.getValue()) + ", expected a string");
      }
      metadata.put(e.getKey(), p.getAsString());
    }
    return metadata;
  }

  private static TensorInfo parseEntry(String name, JsonElement value, Path file, long dataLength) {
    if (!(value instanceof JsonObject entry)) {
      throw bad(file, name, "header entry is " + Json.describe(value)
          + ", expected an object with dtype, shape and data_offsets");
    }
    if (!entry.keySet().equals(FIELDS)) {
      throw bad(file, name, "header entry has fields " + entry.keySet()
          + ", expected exactly [dtype, shape, data_offsets]");
    }
    if (!(entry.get("dtype") instanceof JsonPrimitive dt && dt.isString())) {
      throw bad(file, name,
          "dtype is " + Json.describe(entry.get("dtype")) + ", expected a string");
    }
    DType dtype = DType.parse(dt.getAsString(), file, name);
    long[] shape = longs(entry, "shape", -1, file, name);
    for (long dim : shape) {
      if (dim < 0) {
        throw bad(file, name, "shape " + Arrays.toString(shape) + " has a negative dim " + dim);
      }
    }
    long[] offsets = longs(entry, "data_offsets", 2, file, name);
    long begin = offsets[0];
    long end = offsets[1];
    if (begin < 0 || begin > end) {
      throw bad(file, name, "data_offsets [" + begin + ", " + end + "] are not 0 <= begin <= end");
    }
    if (end > dataLength) {
      throw bad(file, name, "data_offsets [" + begin + ", " + end
          + "] run past the end of the data section (" + dataLength + " bytes)");
    }
    long bytes;
    try {
      long numel = 1;
      for (long dim : shape) {
        numel = Math.multiplyExact(numel, dim);
      }
      bytes = Math.multiplyExact(numel, dtype.byteSize());
    } catch (ArithmeticException e) {
      throw bad(file, name, "shape " + Arrays.toString(shape) + " overflows a 64-bit byte count");
    }
    if (bytes != end - begin) {
      throw bad(file, name, "shape " + Arrays.toString(shape) + " of " + dtype + " needs " + bytes
          + " bytes but data_offsets [" + begin + ", " + end + "] hold " + (end - begin));
    }
    return new TensorInfo(name, dtype, shape, begin, end);
  }

  /** A JSON array of integers under {@code key}; {@code length} -1 accepts any length. */
  private static long[] longs(JsonObject entry, String key, int length, Path file, String name) {
    JsonElement value = entry.get(key);
    if (!(value instanceof JsonArray array) || (length >= 0 && array.size() != length)) {
      throw bad(file, name, key + " is " + Json.describe(value) + ", expected an array of "
          + (length >= 0 ? length + " " : "") + "integers");
    }
    long[] result = new long[array.size()];
    for (int i = 0; i < result.length; i++) {
      Long v = Json.integer(array.get(i));
      if (v == null) {
        throw bad(file, name, key + " element " + Json.describe(array.get(i))
            + " is not an integer that fits 64 bits");
      }
      result[i] = v;
    }
    return result;
  }

  /**
   * The data section must be exactly the tensors laid end to end, as the reference
   * implementation requires: sorted by offset, each tensor begins where the previous one ends
   * (the first at 0), and the last one ends at the end of the file. Two tensors sharing bytes
   * would alias each other; a gap or trailing bytes mean the header and the data disagree, e.g.
   * a header length one byte short, which would otherwise read every tensor one byte off.
   */
  private static void checkLayout(Iterable<TensorInfo> tensors, Path file, long dataLength) {
    List<TensorInfo> sorted = new ArrayList<>();
    tensors.forEach(sorted::add);
    sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
    long expected = 0;
    TensorInfo prev = null;
    for (TensorInfo cur : sorted) {
      if (cur.begin() < expected) {
        throw new SafetensorsException(file + ": tensors '" + prev.name() + "' [" + prev.begin()
            + ", " + prev.end() + ") and '" + cur.name() + "' [" + cur.begin() + ", " + cur.end()
            + ") overlap");
      }
      if (cur.begin() > expected) {
        throw new SafetensorsException(file + ": tensor '" + cur.name() + "' begins at data offset "
            + cur.begin() + " but the tensors before it end at " + expected
            + " (a gap of " + (cur.begin() - expected) + " bytes; tensors must be contiguous)");
      }
      expected = cur.end();
      prev = cur;
    }
    if (expected != dataLength) {
      throw new SafetensorsException(file + ": data section is " + dataLength
          + " bytes but its tensors hold " + expected + " (" + (dataLength - expected)
          + " bytes unaccounted for: is the header length field wrong, or the file truncated"
          + " or padded?)");
    }
  }

  private static SafetensorsException bad(Path file, String tensor, String problem) {
    return new SafetensorsException("tensor '" + tensor + "' in " + file + ": " + problem);
  }
}
