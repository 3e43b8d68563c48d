package dev.cmoe.model.tokenizer;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.Gson;
import com.google.gson.TypeAdapter;
import com.google.gson.JsonPrimitive;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import java.io.IOException;
import java.io.StringReader;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

/**
 * The one tokenizer type the rest of CMoE uses: a Hugging Face {@code tokenizer.json} from a local
 * directory (never a hub download), run by DJL's bundled Rust tokenizers, with the BOS/EOS ids the
 * model needs and a streaming decoder.
 *
 * <p>{@link #encode} adds no special tokens and never truncates or pads: sequence layout is the
 * caller's business. {@link #decode} drops special tokens. Literal text such as {@code "<s>"} is
 * still recognised as the special token by the Hugging Face added-token matcher.
 */
public final class TextTokenizer implements AutoCloseable {
    /** The Hugging Face tokenizer file of a model directory. */
    public static final String TOKENIZER_JSON = "tokenizer.json";
    /** Its config (special tokens, add_bos_token, chat template). */
    public static final String TOKENIZER_CONFIG_JSON = "tokenizer_config.json";

    /** DJL defaults to adding special tokens, truncating to 512 and padding; we want none of that. */
    private static final Map<String, String> DJL_OPTIONS =
            Map.of("addSpecialTokens", "false", "truncation", "false", "padding", "false");

    private static final TypeAdapter<JsonElement> ELEMENT = new Gson().getAdapter(JsonElement.class);

    private final HuggingFaceTokenizer tokenizer;
    private final Path source;
    private final int vocabSize;
    private final int bosId;
    private final int eosId;
    /** Bytes of every token for byte-level vocabularies (null entries: special tokens); null otherwise. */
    private final byte[][] tokenBytes;
    private final int maxTokenBytes;

    private TextTokenizer(HuggingFaceTokenizer tokenizer, Path source, int vocabSize, int bosId, int eosId, byte[][] tokenBytes,
                          int maxTokenBytes) {
        this.maxTokenBytes = maxTokenBytes;
        this.tokenizer = tokenizer;
        this.source = source;
        this.vocabSize = vocabSize;
        this.bosId = bosId;
        this.eosId = eosId;
        this.tokenBytes = tokenBytes;
    }

    /**
     * Loads {@code modelDir/tokenizer.json} (or {@code modelDir} itself when it is a file). BOS/EOS
     * come from {@code config.json}'s {@code bos_token_id}/{@code eos_token_id} when present, else
     * from {@code tokenizer_config.json}'s {@code bos_token}/{@code eos_token}.
     */
    public static TextTokenizer load(Path modelDir) throws IOException {
        Path json = Files.isRegularFile(modelDir) ? modelDir : modelDir.resolve(TOKENIZER_JSON);
        Path dir = json.toAbsolutePath().getParent();
        if (!Files.isRegularFile(json)) {
            throw new IOException("no tokenizer at " + json + ": expected a Hugging Face tokenizer.json"
                    + " (train one with `cmoe train`, or copy it next to the model)");
        }
        JsonObject root = parseObject(json, true);
        JsonObject model = root.get("model") instanceof JsonObject m ? m : null;
        if (model == null || !(model.get("vocab") instanceof JsonObject vocab)) {
            throw new IOException("invalid tokenizer.json at " + json + ": it has no model.vocab object");
        }
        Map<String, Integer> tokenIds = new HashMap<>();
        Map<Integer, Boolean> special = new HashMap<>();
        for (Map.Entry<String, JsonElement> e : vocab.entrySet()) {
            tokenIds.put(e.getKey(), tokenId(e.getValue(), json, "model.vocab entry \"" + e.getKey() + "\""));
        }
        if (tokenIds.isEmpty()) {
            throw new IOException("invalid tokenizer.json at " + json + ": model.vocab is empty");
        }
        JsonElement added = root.get("added_tokens");
        if (added != null && !added.isJsonNull()) {
            if (!added.isJsonArray()) {
                throw new IOException("invalid tokenizer.json at " + json + ": added_tokens is " + kind(added)
                        + ", expected an array");
            }
            int i = 0;
            for (JsonElement t : added.getAsJsonArray()) {
                String where = "added_tokens[" + i++ + "]";
                if (!(t instanceof JsonObject o)) {
                    throw new IOException("invalid tokenizer.json at " + json + ": " + where + " is " + kind(t)
                            + ", expected an object with id and content");
                }
                int id = tokenId(o.get("id"), json, where + ".id");
                String content = string(o.get("content"), json, where + ".content");
                JsonElement sp = o.get("special");
                if (sp != null && !(sp instanceof JsonPrimitive p && p.isBoolean())) {
                    throw new IOException("invalid tokenizer.json at " + json + ": " + where + ".special is "
                            + kind(sp) + ", expected true or false");
                }
                tokenIds.put(content, id);
                special.put(id, sp != null && sp.getAsBoolean());
            }
        }
        int size = tokenIds.values().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1;
        int bos = specialId(dir, "bos", tokenIds, json, size);
        int eos = specialId(dir, "eos", tokenIds, json, size);
        byte[][] bytes = isByteLevel(root, json) ? byteTable(tokenIds, special, size) : null;

        HuggingFaceTokenizer hf;
        try {
            hf = HuggingFaceTokenizer.newInstance(json, DJL_OPTIONS);
        } catch (RuntimeException e) {
            throw new IOException("the tokenizers library rejected " + json + ": " + e.getMessage(), e);
        }
        int maxBytes = maxTokenBytes(tokenIds.keySet(), bytes);
        // A normalizer may map several input bytes onto one (or none), so the bound widens.
        boolean normalizes = root.get("normalizer") != null && !root.get("normalizer").isJsonNull();
        return new TextTokenizer(hf, json, size, bos, eos, bytes, normalizes ? 4 * Math.max(maxBytes, 4) : maxBytes);
    }

    /** The largest id a tokenizer may use: an embedding of this many rows is far past any real model. */
    static final int MAX_TOKEN_ID = 4_194_303;

    private static int tokenId(JsonElement v, Path json, String where) throws IOException {
        if (v instanceof JsonPrimitive p && p.isNumber()) {
            double d = p.getAsDouble();
            if (d == Math.rint(d) && d >= 0 && d <= MAX_TOKEN_ID) {
                return (int) d;
            }
        }
        throw new IOException("invalid tokenizer.json at " + json + ": " + where + " is " + kind(v)
                + ", expected a token id, an integer in [0, " + MAX_TOKEN_ID + "]");
    }

    private static String string(JsonElement v, Path file, String where) throws IOException {
        if (v instanceof JsonPrimitive p && p.isString()) {
            return p.getAsString();
        }
        throw new IOException("invalid " + file.getFileName() + " at " + file + ": " + where + " is " + kind(v)
                + ", expected a string");
    }

    /** What a JSON value is, for messages: its type and a short excerpt. */
    private static String kind(JsonElement v) {
        if (v == null) {
            return "missing";
        }
        String text = v.toString();
        String type = v.isJsonObject() ? "an object" : v.isJsonArray() ? "an array" : v.isJsonNull() ? "null"
                : v.getAsJsonPrimitive().isString() ? "a string" : v.getAsJsonPrimitive().isBoolean() ? "a boolean"
                : "a number";
        return type + " (" + (text.length() > 40 ? text.substring(0, 40) + "..." : text) + ")";
    }

    /** The most UTF-8 bytes of text one token can stand for (at least 1). */
    private static int maxTokenBytes(Iterable<String> tokens, byte[][] bytes) {
        int max = 1;
        for (String t : tokens) {
            max = Math.max(max, t.getBytes(StandardCharsets.UTF_8).length);
        }
        if (bytes != null) {
            for (byte[] b : bytes) {
                max = Math.max(max, b == null ? 0 : b.length);
            }
        }
        return max;
    }

    /** Token ids of {@code text}, with no special tokens added. */
    public long[] encode(String text) {
        return tokenizer.encode(text, false, false).getIds();
    }

    /** Token ids of {@code text} as the model consumes them, optionally after a BOS token. */
    public int[] encodeIds(String text, boolean withBos) {
        long[] ids = encode(text);
        int off = withBos ? 1 : 0;
        int[] out = new int[ids.length + off];
        if (withBos) {
            out[0] = bosId;
        }
        for (int i = 0; i < ids.length; i++) {
            out[i + off] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    /** The text of {@code ids}, special tokens left out. */
    public String decode(long[] ids) {
        return tokenizer.decode(ids, true);
    }

    /** The beginning-of-sequence id. */
    public int bosId() {
        return bosId;
    }

    /** The end-of-sequence id. */
    public int eosId() {
        return eosId;
    }

    /** One more than the largest token id: the embedding and output layers' row count. */
    public int vocabSize() {
        return vocabSize;
    }

    /**
     * An upper bound on the UTF-8 bytes of text one token stands for, so that a text of more than
     * {@code n × maxTokenBytes()} bytes is known to need more than {@code n} tokens without being
     * tokenised (a server bounds prompts with it). Exact for normalizer-free tokenizers such as
     * ours; widened fourfold when a normalizer may shrink the text.
     */
    public int maxTokenBytes() {
        return maxTokenBytes;
    }

    /** The tokenizer.json this was loaded from. */
    public Path source() {
        return source;
    }

    /** A fresh incremental decoder for one generated sequence. */
    public StreamDecoder streamDecoder() {
        if (tokenBytes != null) {
            return StreamDecoder.ofBytes(id -> id < tokenBytes.length ? tokenBytes[id] : null);
        }
        return StreamDecoder.ofDecodeFunction(this::decode);
    }

    @Override
    public void close() {
        tokenizer.close();
    }

    private static boolean isByteLevel(JsonObject root, Path json) throws IOException {
        if (!(root.get("decoder") instanceof JsonObject d)) {
            return false;
        }
        return "ByteLevel".equals(string(d.get("type"), json, "decoder.type"));
    }

    private static byte[][] byteTable(Map<String, Integer> tokenIds, Map<Integer, Boolean> special, int size) {
        byte[][] table = new byte[size][];
        for (Map.Entry<String, Integer> e : tokenIds.entrySet()) {
            int id = e.getValue();
            Boolean isSpecial = special.get(id);
            if (Boolean.TRUE.equals(isSpecial)) {
                continue; // control tokens carry no text, as in decode()
            }
            // Added (non-special) tokens are matched and decoded as raw text, model tokens as byte symbols.
            byte[] b = isSpecial == null ? ByteLevel.decode(e.getKey()) : null;
            table[id] = b != null ? b : e.getKey().getBytes(StandardCharsets.UTF_8);
        }
        return table;
    }

    /** Resolves "bos"/"eos": config.json's {@code <kind>_token_id}, else tokenizer_config.json's token. */
    private static int specialId(Path dir, String kind, Map<String, Integer> tokenIds, Path json, int size)
            throws IOException {
        Path configPath = dir.resolve("config.json");
        JsonObject config = parseObject(configPath, false);
        if (config != null && config.get(kind + "_token_id") instanceof JsonPrimitive v) {
            if (!v.isNumber() || v.getAsDouble() != Math.rint(v.getAsDouble()) || v.getAsDouble() < 0
                    || v.getAsDouble() >= size) {
                throw new IOException(configPath + ": " + kind + "_token_id is " + kind(v)
                        + ", expected a token id in [0, " + size + ") of " + json);
            }
            return v.getAsInt();
        }
        Path tcPath = dir.resolve(TOKENIZER_CONFIG_JSON);
        JsonObject tc = parseObject(tcPath, false);
        if (tc != null && tc.get(kind + "_token") != null && !tc.get(kind + "_token").isJsonNull()) {
            JsonElement t = tc.get(kind + "_token");
            // Either "<s>" or an AddedToken object {"content": "<s>", ...}.
            String content = t instanceof JsonObject o ? string(o.get("content"), tcPath, kind + "_token.content")
                    : string(t, tcPath, kind + "_token");
            Integer id = tokenIds.get(content);
            if (id == null) {
                throw new IOException(tcPath + " names " + kind + "_token \"" + content + "\", which " + json + " does not contain");
            }
            return id;
        }
        throw new IOException("no " + kind.toUpperCase(java.util.Locale.ROOT) + " token defined for " + json + ": set "
                + kind + "_token_id in config.json or " + kind + "_token in tokenizer_config.json");
    }

    /** Tokenizer files past this size are refused before they are read: real ones are a few MB. */
    static final long MAX_FILE_BYTES = 512L << 20;

    private static JsonObject parseObject(Path file, boolean required) throws IOException {
        if (!Files.isRegularFile(file)) {
            if (required) {
                throw new IOException("missing " + file);
            }
            return null;
        }
        long length = Files.size(file);
        if (length > MAX_FILE_BYTES) {
            throw new IOException(file + " is " + length + " bytes, over the limit of " + MAX_FILE_BYTES);
        }
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(Files.readAllBytes(file))).toString();
        } catch (CharacterCodingException e) {
            throw new IOException("invalid " + file.getFileName() + " at " + file + ": not valid UTF-8", e);
        }
        JsonElement e;
        try {
            JsonReader reader = new JsonReader(new StringReader(text));
            reader.setStrictness(Strictness.STRICT);
            e = ELEMENT.read(reader); // keeps STRICT, which JsonParser.parseReader would drop
            if (reader.peek() != JsonToken.END_DOCUMENT) {
                throw new IOException("invalid JSON in " + file + ": text follows the top-level value");
            }
        } catch (RuntimeException | IOException x) {
            if (x instanceof IOException io && io.getMessage().startsWith("invalid JSON in ")) {
                throw io;
            }
            throw new IOException("invalid JSON in " + file + ": " + x.getMessage(), x);
        }
        if (!e.isJsonObject()) {
            throw new IOException("invalid JSON in " + file + ": expected an object, got " + kind(e));
        }
        return e.getAsJsonObject();
    }
}
