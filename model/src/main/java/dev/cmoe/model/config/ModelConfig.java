package dev.cmoe.model.config;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.cmoe.model.arch.Architecture;
import dev.cmoe.model.arch.Architectures;
import dev.cmoe.model.arch.RopeScaling;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The hyperparameters of a LLaMA-family checkpoint, read from a Hugging Face {@code config.json}.
 *
 * <p>The fields every family shares are read here; what differs (biases, q/k norms, sliding
 * windows) comes from the family's {@link Architecture} in the registry. Sizes are bounded so
 * that a corrupt or hostile config fails here, naming the field, instead of exhausting memory
 * later. The raw JSON is kept so that tools which rewrite a checkpoint (carving) preserve fields
 * we do not interpret.
 *
 * @param attentionBias q, k and v projections have biases
 * @param outputBias the attention output projection has a bias
 * @param qkNorm per-head RMSNorm of queries and keys before RoPE
 * @param slidingWindow attention window in tokens, or 0 for full causal attention
 * @param windowFromLayer the first layer that uses the window
 */
public record ModelConfig(
        String modelType,
        Architecture architecture,
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
        RopeScaling ropeScaling,
        boolean tieWordEmbeddings,
        boolean attentionBias,
        boolean outputBias,
        boolean qkNorm,
        int slidingWindow,
        int windowFromLayer,
        int bosTokenId,
        List<Integer> eosTokenIds,
        JsonObject raw) {

    // Upper bounds well above every released dense model, low enough that sizes derived from
    // them cannot overflow or ask for absurd allocations before a tensor is read.
    static final int MAX_HIDDEN = 1 << 16;
    static final int MAX_INTERMEDIATE = 1 << 20;
    static final int MAX_LAYERS = 1024;
    static final int MAX_HEADS = 1024;
    static final int MAX_HEAD_DIM = 1024;
    static final int MAX_VOCAB = 1 << 22;
    static final int MAX_POSITIONS = 1 << 24;

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
        } catch (JsonParseException | IllegalStateException e) {
            throw new ModelConfigException(source + ": not valid JSON: " + e.getMessage(), e);
        }
        ConfigFields f = new ConfigFields(o, source);
        String type = f.string("model_type");
        Architecture arch = Architectures.resolve(o, type, source);
        String act = f.optString("hidden_act", "silu");
        if (!act.equals("silu")) {
            throw new ModelConfigException(source + ": unsupported hidden_act '" + act + "' (only silu / SwiGLU)");
        }
        f.requireFalse("mlp_bias", "the SwiGLU projections have no biases in the supported families");
        double partialRotary = f.has("partial_rotary_factor") ? f.positiveDouble("partial_rotary_factor") : 1.0;
        if (partialRotary != 1.0) {
            throw new ModelConfigException(source + ": partial_rotary_factor " + partialRotary
                    + " is not supported (RoPE over the whole head)");
        }
        int hidden = f.boundedInt("hidden_size", MAX_HIDDEN);
        int heads = f.boundedInt("num_attention_heads", MAX_HEADS);
        int kvHeads = f.has("num_key_value_heads") ? f.boundedInt("num_key_value_heads", MAX_HEADS) : heads;
        if (heads % kvHeads != 0) {
            throw new ModelConfigException(source + ": num_attention_heads " + heads
                    + " is not a multiple of num_key_value_heads " + kvHeads);
        }
        int headDim;
        if (f.has("head_dim")) {
            headDim = f.boundedInt("head_dim", MAX_HEAD_DIM);
        } else {
            if (hidden % heads != 0) {
                throw new ModelConfigException(source + ": hidden_size " + hidden
                        + " is not a multiple of num_attention_heads " + heads + " and no head_dim is given");
            }
            headDim = hidden / heads;
        }
        if (headDim % 2 != 0) {
            throw new ModelConfigException(source + ": head dimension " + headDim + " must be even for RoPE");
        }
        int layers = f.boundedInt("num_hidden_layers", MAX_LAYERS);
        int maxPos = f.boundedInt("max_position_embeddings", MAX_POSITIONS);
        Architecture.Features features = arch.features().apply(f);
        int window = features.slidingWindow();
        if (window >= maxPos || features.windowFromLayer() >= layers) {
            window = 0; // a window as long as the context, or on no layer, is plain causal attention
        }
        return new ModelConfig(
                type,
                arch,
                hidden,
                f.boundedInt("intermediate_size", MAX_INTERMEDIATE),
                layers,
                heads,
                kvHeads,
                headDim,
                f.boundedInt("vocab_size", MAX_VOCAB),
                maxPos,
                f.positiveDouble("rms_norm_eps"),
                f.has("rope_theta") ? f.positiveDouble("rope_theta") : 10000.0,
                RopeScaling.parse(o.get("rope_scaling"), maxPos, source),
                f.optBool("tie_word_embeddings", false),
                features.qkvBias(),
                features.outputBias(),
                features.qkNorm(),
                window,
                window == 0 ? 0 : features.windowFromLayer(),
                f.optInt("bos_token_id", -1),
                f.intOrList("eos_token_id"),
                o.deepCopy());
    }

    /** The sliding window of layer {@code layer} in tokens, or 0 for full causal attention. */
    public int slidingWindow(int layer) {
        return layer >= windowFromLayer ? slidingWindow : 0;
    }

    /** The longest sequence this model runs: the context, stretched where the RoPE scaling is meant to. */
    public int contextLength() {
        return ropeScaling.context(maxPositionEmbeddings);
    }

    /** The first entry of {@code architectures}, or the model type when there is none. */
    public String architectureName() {
        JsonElement a = raw.get("architectures");
        if (a != null && a.isJsonArray() && !a.getAsJsonArray().isEmpty()) {
            return a.getAsJsonArray().get(0).getAsString();
        }
        return modelType;
    }

    /** config.json's {@code torch_dtype} ("bfloat16"), when it names one. */
    public java.util.Optional<String> torchDtype() {
        JsonElement t = raw.get("torch_dtype");
        return t != null && t.isJsonPrimitive() && t.getAsJsonPrimitive().isString()
                ? java.util.Optional.of(t.getAsString()) : java.util.Optional.empty();
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
}
