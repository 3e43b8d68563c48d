package dev.cmoe.model.config;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The architecture of a LLaMA-family checkpoint, read from a Hugging Face {@code config.json}.
 *
 * <p>One record covers {@code llama}, {@code mistral} and {@code qwen2}: they differ only in
 * defaults (qwen2 has q/k/v biases, mistral may have a sliding window). The raw JSON is kept so
 * that tools which rewrite a checkpoint (carving) can preserve fields we do not interpret.
 *
 * @param slidingWindow attention window in tokens, or 0 for full causal attention
 */
public record ModelConfig(
        String modelType,
        int hiddenSize,
        int intermediateSize,
        int numLayers,
        int numHeads,
        int numKvHeads,
        int headDim,
        int vocabSize,
        int maxPositionEmbeddings,
        double rmsNormEps,
        double ropeTheta,
        boolean tieWordEmbeddings,
        boolean attentionBias,
        int slidingWindow,
        int bosTokenId,
        List<Integer> eosTokenIds,
        JsonObject raw) {

    /** Model types whose decoder layers this code implements. */
    public static final Set<String> SUPPORTED_TYPES = Set.of("llama", "mistral", "qwen2");

    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create();

    public ModelConfig {
        eosTokenIds = List.copyOf(eosTokenIds);
    }

    /** Reads and validates {@code dir/config.json}. */
    public static ModelConfig load(Path dir) {
        Path file = dir.resolve("config.json");
        if (!Files.isRegularFile(file)) {
            throw new ModelConfigException(file + ": no config.json in the model directory " + dir);
        }
        try {
            return parse(Files.readString(file, StandardCharsets.UTF_8), file.toString());
        } catch (IOException e) {
            throw new ModelConfigException(file + ": cannot read: " + e.getMessage(), e);
        }
    }

    /** Parses config JSON text; {@code source} names it in error messages. */
    public static ModelConfig parse(String json, String source) {
        JsonObject o;
        try {
            JsonElement e = JsonParser.parseString(json);
            if (!e.isJsonObject()) {
                throw new ModelConfigException(source + ": config must be a JSON object");
            }
            o = e.getAsJsonObject();
        } catch (JsonParseException e) {
            throw new ModelConfigException(source + ": not valid JSON: " + e.getMessage(), e);
        }
        Fields f = new Fields(o, source);
        String type = f.string("model_type");
        if (!SUPPORTED_TYPES.contains(type)) {
            throw new ModelConfigException(source + ": unsupported model_type '" + type
                    + "' (supported: llama, mistral, qwen2)");
        }
        String act = f.optString("hidden_act", "silu");
        if (!act.equals("silu")) {
            throw new ModelConfigException(source + ": unsupported hidden_act '" + act + "' (only silu / SwiGLU)");
        }
        if (o.has("rope_scaling") && !o.get("rope_scaling").isJsonNull()) {
            throw new ModelConfigException(source + ": rope_scaling " + o.get("rope_scaling")
                    + " is not supported (only plain RoPE)");
        }
        int hidden = f.positiveInt("hidden_size");
        int heads = f.positiveInt("num_attention_heads");
        int kvHeads = o.has("num_key_value_heads") ? f.positiveInt("num_key_value_heads") : heads;
        if (heads % kvHeads != 0) {
            throw new ModelConfigException(source + ": num_attention_heads " + heads
                    + " is not a multiple of num_key_value_heads " + kvHeads);
        }
        int headDim = o.has("head_dim") && !o.get("head_dim").isJsonNull() ? f.positiveInt("head_dim") : hidden / heads;
        if (!o.has("head_dim") && hidden % heads != 0) {
            throw new ModelConfigException(source + ": hidden_size " + hidden
                    + " is not a multiple of num_attention_heads " + heads);
        }
        if (headDim % 2 != 0) {
            throw new ModelConfigException(source + ": head dimension " + headDim + " must be even for RoPE");
        }
        boolean qwen = type.equals("qwen2");
        int window = 0;
        if (o.has("sliding_window") && !o.get("sliding_window").isJsonNull()) {
            boolean used = !qwen || f.optBool("use_sliding_window", false);
            if (used) {
                window = f.positiveInt("sliding_window");
            }
        }
        int maxPos = f.positiveInt("max_position_embeddings");
        if (window >= maxPos) {
            window = 0; // a window as long as the context is plain causal attention
        }
        return new ModelConfig(
                type,
                hidden,
                f.positiveInt("intermediate_size"),
                f.positiveInt("num_hidden_layers"),
                heads,
                kvHeads,
                headDim,
                f.positiveInt("vocab_size"),
                maxPos,
                f.positiveDouble("rms_norm_eps"),
                o.has("rope_theta") ? f.positiveDouble("rope_theta") : 10000.0,
                f.optBool("tie_word_embeddings", false),
                qwen || f.optBool("attention_bias", false),
                window,
                f.optInt("bos_token_id", -1),
                f.intOrList("eos_token_id"),
                o.deepCopy());
    }

    /** Query projection width: heads × headDim. */
    public int qDim() {
        return numHeads * headDim;
    }

    /** Key/value projection width: kvHeads × headDim (smaller than qDim under GQA). */
    public int kvDim() {
        return numKvHeads * headDim;
    }

    /** The first end-of-sequence id, or -1 when the config names none. */
    public int eosTokenId() {
        return eosTokenIds.isEmpty() ? -1 : eosTokenIds.get(0);
    }

    /** The raw config as pretty JSON, with any fields this record does not model kept as they were. */
    public String toJson() {
        return GSON.toJson(raw);
    }

    /** A copy of the raw JSON, for writers that add blocks (e.g. {@code cmoe}) to a derived checkpoint. */
    public JsonObject rawCopy() {
        return raw.deepCopy();
    }

    /** Typed access to required and optional fields with errors that name the field and file. */
    private record Fields(JsonObject o, String source) {
        JsonElement required(String name) {
            JsonElement e = o.get(name);
            if (e == null || e.isJsonNull()) {
                throw new ModelConfigException(source + ": missing required field '" + name + "'");
            }
            return e;
        }

        String string(String name) {
            JsonElement e = required(name);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
                throw new ModelConfigException(source + ": field '" + name + "' must be a string, got " + e);
            }
            return e.getAsString();
        }

        String optString(String name, String dflt) {
            return o.has(name) && !o.get(name).isJsonNull() ? string(name) : dflt;
        }

        int positiveInt(String name) {
            int v = intValue(name, required(name));
            if (v <= 0) {
                throw new ModelConfigException(source + ": field '" + name + "' must be positive, got " + v);
            }
            return v;
        }

        int optInt(String name, int dflt) {
            return o.has(name) && !o.get(name).isJsonNull() ? intValue(name, o.get(name)) : dflt;
        }

        double positiveDouble(String name) {
            JsonElement e = required(name);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
                throw new ModelConfigException(source + ": field '" + name + "' must be a number, got " + e);
            }
            double v = e.getAsDouble();
            if (!(v > 0) || Double.isInfinite(v)) {
                throw new ModelConfigException(source + ": field '" + name + "' must be positive, got " + v);
            }
            return v;
        }

        boolean optBool(String name, boolean dflt) {
            JsonElement e = o.get(name);
            if (e == null || e.isJsonNull()) {
                return dflt;
            }
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) {
                throw new ModelConfigException(source + ": field '" + name + "' must be true or false, got " + e);
            }
            return e.getAsBoolean();
        }

        List<Integer> intOrList(String name) {
            JsonElement e = o.get(name);
            List<Integer> ids = new ArrayList<>();
            if (e == null || e.isJsonNull()) {
                return ids;
            }
            if (e.isJsonArray()) {
                e.getAsJsonArray().forEach(x -> ids.add(intValue(name, x)));
            } else {
                ids.add(intValue(name, e));
            }
            return ids;
        }

        int intValue(String name, JsonElement e) {
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
                throw new ModelConfigException(source + ": field '" + name + "' must be an integer, got " + e);
            }
            double d = e.getAsDouble();
            if (d != Math.rint(d) || Math.abs(d) > Integer.MAX_VALUE) {
                throw new ModelConfigException(source + ": field '" + name + "' must be an integer, got " + e);
            }
            return (int) d;
        }
    }
}
