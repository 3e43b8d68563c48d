package dev.cmoe.deploy.gguf;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A byte-level BPE {@code tokenizer.json} (the kind {@code cmoe train} writes, GPT-2's) as GGUF's
 * {@code tokenizer.ggml.*} metadata: llama.cpp's "gpt2" tokenizer with the GPT-2 pre-tokenizer
 * regex reproduces it exactly. Other tokenizer kinds are refused by name rather than converted
 * into something that tokenizes differently.
 *
 * @param tokens token strings by id, padded to the model's vocabulary with {@code [PADn]}
 * @param types llama.cpp's token types by id
 * @param merges the BPE merges, {@code "left right"}, in priority order
 * @param addBos tokenizer_config.json's {@code add_bos_token}, when it says
 */
public record GgufVocab(List<String> tokens, int[] types, List<String> merges, Optional<Boolean> addBos) {
    // llama_token_type
    static final int NORMAL = 1;
    static final int CONTROL = 3;
    static final int USER_DEFINED = 4;
    static final int UNUSED = 5;

    public GgufVocab {
        tokens = List.copyOf(tokens);
        types = types.clone();
        merges = List.copyOf(merges);
    }

    @Override
    public int[] types() {
        return types.clone();
    }

    /** Reads {@code dir/tokenizer.json} (and tokenizer_config.json if present) for a model of {@code vocabSize} ids. */
    public static GgufVocab read(Path dir, int vocabSize) {
        Path file = dir.resolve("tokenizer.json");
        JsonObject root = parse(file);
        JsonObject model = object(root, "model", file);
        String type = model.has("type") ? model.get("type").getAsString() : "";
        if (!type.equals("BPE")) {
            throw new IllegalArgumentException(file + ": tokenizer model is '" + type + "'; the GGUF converter handles"
                    + " byte-level BPE only");
        }
        if (model.has("byte_fallback") && !model.get("byte_fallback").isJsonNull()
                && model.get("byte_fallback").getAsBoolean()) {
            throw new IllegalArgumentException(file + ": BPE with byte_fallback (a SentencePiece-style tokenizer) is"
                    + " not converted; the converter handles byte-level BPE only");
        }
        requireByteLevel(root.get("pre_tokenizer"), file);

        String[] byId = new String[vocabSize];
        int[] types = new int[vocabSize];
        for (Map.Entry<String, JsonElement> e : object(model, "vocab", file).entrySet()) {
            place(byId, types, e.getValue().getAsInt(), e.getKey(), NORMAL, file);
        }
        if (root.get("added_tokens") instanceof JsonArray added) {
            for (JsonElement a : added) {
                JsonObject t = a.getAsJsonObject();
                int id = t.get("id").getAsInt();
                String content = t.get("content").getAsString();
                boolean special = t.has("special") && t.get("special").getAsBoolean();
                if (id >= 0 && id < vocabSize && content.equals(byId[id])) {
                    byId[id] = null; // the vocab already holds it; the added entry says what kind it is
                }
                place(byId, types, id, content, special ? CONTROL : USER_DEFINED, file);
            }
        }
        List<String> tokens = new ArrayList<>(vocabSize);
        for (int id = 0; id < vocabSize; id++) {
            if (byId[id] == null) {
                byId[id] = "[PAD" + id + "]"; // as convert_hf_to_gguf.py fills ids the tokenizer never produces
                types[id] = UNUSED;
            }
            tokens.add(byId[id]);
        }
        return new GgufVocab(tokens, types, merges(model, file), addBos(dir.resolve("tokenizer_config.json")));
    }

    private static void place(String[] byId, int[] types, int id, String token, int type, Path file) {
        if (id < 0 || id >= byId.length) {
            throw new IllegalArgumentException(file + ": token '" + token + "' has id " + id + ", outside the model's"
                    + " vocabulary of " + byId.length + " (config.json vocab_size)");
        }
        if (byId[id] != null) {
            throw new IllegalArgumentException(file + ": id " + id + " is both '" + byId[id] + "' and '" + token + "'");
        }
        byId[id] = token;
        types[id] = type;
    }

    /** Only GPT-2's byte-level pre-tokenizer (with its regex) maps onto llama.cpp's "gpt-2" one. */
    private static void requireByteLevel(JsonElement pre, Path file) {
        if (pre instanceof JsonObject p && p.has("type") && p.get("type").getAsString().equals("ByteLevel")) {
            boolean regex = !p.has("use_regex") || p.get("use_regex").getAsBoolean();
            boolean prefix = p.has("add_prefix_space") && p.get("add_prefix_space").getAsBoolean();
            if (regex && !prefix) {
                return;
            }
        }
        throw new IllegalArgumentException(file + ": pre_tokenizer " + pre + " is not GPT-2's ByteLevel (use_regex,"
                + " no prefix space), which is the only one the GGUF converter maps to llama.cpp");
    }

    /** Merges are {@code "a b"} strings in older files, {@code ["a", "b"]} pairs in newer ones. */
    private static List<String> merges(JsonObject model, Path file) {
        List<String> merges = new ArrayList<>();
        if (!(model.get("merges") instanceof JsonArray array)) {
            throw new IllegalArgumentException(file + ": model.merges is missing");
        }
        for (JsonElement m : array) {
            if (m.isJsonArray() && m.getAsJsonArray().size() == 2) {
                merges.add(m.getAsJsonArray().get(0).getAsString() + " " + m.getAsJsonArray().get(1).getAsString());
            } else if (m.isJsonPrimitive() && m.getAsString().split(" ", -1).length == 2) {
                merges.add(m.getAsString());
            } else {
                throw new IllegalArgumentException(file + ": merge " + m + " is neither \"a b\" nor [\"a\", \"b\"]");
            }
        }
        return merges;
    }

    private static Optional<Boolean> addBos(Path config) {
        if (!Files.isRegularFile(config)) {
            return Optional.empty();
        }
        JsonObject o = parse(config);
        JsonElement v = o.get("add_bos_token");
        return v != null && v.isJsonPrimitive() ? Optional.of(v.getAsBoolean()) : Optional.empty();
    }

    private static JsonObject parse(Path file) {
        try {
            JsonElement e = JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8));
            if (!e.isJsonObject()) {
                throw new IllegalArgumentException(file + ": not a JSON object");
            }
            return e.getAsJsonObject();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        } catch (JsonParseException | IllegalStateException e) {
            throw new IllegalArgumentException(file + ": not valid JSON: " + e.getMessage(), e);
        }
    }

    private static JsonObject object(JsonObject o, String key, Path file) {
        if (o.get(key) instanceof JsonObject v) {
            return v;
        }
        throw new IllegalArgumentException(file + ": '" + key + "' is missing or not an object");
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GgufVocab v && tokens.equals(v.tokens) && Arrays.equals(types, v.types)
                && merges.equals(v.merges) && addBos.equals(v.addBos);
    }

    @Override
    public int hashCode() {
        return 31 * tokens.hashCode() + Arrays.hashCode(types);
    }
}
