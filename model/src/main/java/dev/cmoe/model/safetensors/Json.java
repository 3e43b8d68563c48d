package dev.cmoe.model.safetensors;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonPrimitive;
import com.google.gson.Strictness;
import com.google.gson.TypeAdapter;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import java.io.IOException;
import java.io.StringReader;
import java.util.regex.Pattern;

/** Strict JSON helpers shared by the header and index parsers. */
final class Json {

  // The adapter keeps the reader's strictness; JsonParser.parseReader would force lenient.
  private static final TypeAdapter<JsonElement> ELEMENT = new Gson().getAdapter(JsonElement.class);
  private static final Pattern INTEGER = Pattern.compile("-?[0-9]+");
  private static final int DESCRIBE_MAX = 60;

  private Json() {}

  /**
   * Parses {@code text} as exactly one JSON object under RFC 8259 rules (Gson's default parser is
   * lenient and would accept single quotes, comments and unquoted names). A top-level key given
   * twice is an error because Gson would silently keep the last one, hiding a conflicting tensor.
   *
   * @param what how messages name the document, e.g. "header of /x/model.safetensors"
   */
  static JsonObject parseObject(String text, String what) {
    try (JsonReader reader = new JsonReader(new StringReader(text))) {
      reader.setStrictness(Strictness.STRICT);
      if (reader.peek() != JsonToken.BEGIN_OBJECT) {
        throw new SafetensorsException(what + " is not a JSON object");
      }
      JsonObject object = new JsonObject();
      reader.beginObject();
      while (reader.hasNext()) {
        String key = reader.nextName();
        if (object.has(key)) {
          throw new SafetensorsException(what + " has the key '" + key + "' twice");
        }
        object.add(key, ELEMENT.read(reader));
      }
      reader.endObject();
      if (reader.peek() != JsonToken.END_DOCUMENT) {
        throw new SafetensorsException(what + " has data after its JSON object");
      }
      return object;
    } catch (IOException | JsonParseException | IllegalStateException | NumberFormatException e) {
      throw new SafetensorsException(what + " is not valid JSON: " + e.getMessage(), e);
    }
  }

  /**
   * The value of a JSON integer literal that fits a long, or null for anything else (strings,
   * fractions like 2.0, exponents, out-of-range numbers), so offsets and dims are exact.
   */
  static Long integer(JsonElement e) {
    if (e instanceof JsonPrimitive p && p.isNumber()) {
      String s = p.getAsString();
      if (INTEGER.matcher(s).matches()) {
        try {
          return Long.parseLong(s);
        } catch (NumberFormatException tooBig) {
          return null;
        }
      }
    }
    return null;
  }

  /** A short rendering of a JSON value for messages; a hostile header may hold huge values. */
  static String describe(JsonElement e) {
    String s = String.valueOf(e);
    return s.length() <= DESCRIBE_MAX ? s : s.substring(0, DESCRIBE_MAX) + "...";
  }
}
