package dev.cmoe.model.tokenizer;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
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

    private final HuggingFaceTokenizer tokenizer;
    private final Path source;
    private final int vocabSize;
    private final int bosId;
    private final int eosId;
    /** Bytes of every token for byte-level vocabularies (null entries: special tokens); null otherwise. */
    private final byte[][] tokenBytes;

    private TextTokenizer(HuggingFaceTokenizer tokenizer, Path source, int vocabSize, int bosId, int eosId, byte[][] tokenBytes) {
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
        try {
            vocab.entrySet().forEach(e -> tokenIds.put(e.getKey(), e.getValue().getAsInt()));
            if (root.get("added_tokens") != null && root.get("added_tokens").isJsonArray()) {
                for (JsonElement t : root.getAsJsonArray("added_tokens")) {
                    JsonObject o = t.getAsJsonObject();
                    int id = o.get("id").getAsInt();
                    tokenIds.put(o.get("content").getAsString(), id);
                    special.put(id, o.has("special") && o.get("special").getAsBoolean());
                }
            }
        } catch (RuntimeException e) {
            throw new IOException("invalid tokenizer.json at " + json + ": malformed vocab or added_tokens (" + e.getMessage() + ")", e);
        }
        int size = tokenIds.values().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1;
        int bos = specialId(dir, "bos", tokenIds, json);
        int eos = specialId(dir, "eos", tokenIds, json);
        byte[][] bytes = isByteLevel(root) ? byteTable(tokenIds, special, size) : null;

        HuggingFaceTokenizer hf;
        try {
            hf = HuggingFaceTokenizer.newInstance(json, DJL_OPTIONS);
        } catch (RuntimeException e) {
            throw new IOException("the tokenizers library rejected " + json + ": " + e.getMessage(), e);
        }
        return new TextTokenizer(hf, json, size, bos, eos, bytes);
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

    private static boolean isByteLevel(JsonObject root) {
        return root.get("decoder") instanceof JsonObject d && d.has("type") && "ByteLevel".equals(d.get("type").getAsString());
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
    private static int specialId(Path dir, String kind, Map<String, Integer> tokenIds, Path json) throws IOException {
        JsonObject config = parseObject(dir.resolve("config.json"), false);
        if (config != null && config.get(kind + "_token_id") instanceof JsonElement v && v.isJsonPrimitive()) {
            return v.getAsInt();
        }
        Path tcPath = dir.resolve(TOKENIZER_CONFIG_JSON);
        JsonObject tc = parseObject(tcPath, false);
        if (tc != null && tc.get(kind + "_token") != null && !tc.get(kind + "_token").isJsonNull()) {
            JsonElement t = tc.get(kind + "_token");
            // Either "<s>" or an AddedToken object {"content": "<s>", ...}.
            String content = t.isJsonObject() ? t.getAsJsonObject().get("content").getAsString() : t.getAsString();
            Integer id = tokenIds.get(content);
            if (id == null) {
                throw new IOException(tcPath + " names " + kind + "_token \"" + content + "\", which " + json + " does not contain");
            }
            return id;
        }
        throw new IOException("no " + kind.toUpperCase(java.util.Locale.ROOT) + " token defined for " + json + ": set "
                + kind + "_token_id in config.json or " + kind + "_token in tokenizer_config.json");
    }

    private static JsonObject parseObject(Path file, boolean required) throws IOException {
        if (!Files.isRegularFile(file)) {
            if (required) {
                throw new IOException("missing " + file);
            }
            return null;
        }
        try {
            JsonElement e = JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8));
            if (!e.isJsonObject()) {
                throw new IOException("invalid JSON in " + file + ": expected an object");
            }
            return e.getAsJsonObject();
        } catch (RuntimeException e) {
            throw new IOException("invalid JSON in " + file + ": " + e.getMessage(), e);
        }
    }
}
