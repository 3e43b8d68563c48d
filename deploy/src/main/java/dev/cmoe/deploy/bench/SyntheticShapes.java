package dev.cmoe.deploy.bench;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The config.json fields of real model shapes, for random-weight checkpoints of their exact
 * architecture (no weights of them are available here). Values are the published configs'.
 */
public final class SyntheticShapes {
    private static final Map<String, JsonObject> SHAPES = new LinkedHashMap<>();

    static {
        SHAPES.put("llama-2-7b", shape("llama", "LlamaForCausalLM", 4096, 11008, 32, 32, 32, 0, 32000, 4096,
                10000.0, 1e-5, null));
        JsonObject llama3 = new JsonObject();
        llama3.addProperty("rope_type", "llama3");
        llama3.addProperty("factor", 8.0);
        llama3.addProperty("low_freq_factor", 1.0);
        llama3.addProperty("high_freq_factor", 4.0);
        llama3.addProperty("original_max_position_embeddings", 8192);
        SHAPES.put("llama-3.1-8b", shape("llama", "LlamaForCausalLM", 4096, 14336, 32, 32, 8, 0, 128256, 131072,
                500000.0, 1e-5, llama3));
        SHAPES.put("mistral-7b", shape("mistral", "MistralForCausalLM", 4096, 14336, 32, 32, 8, 0, 32768, 32768,
                1000000.0, 1e-5, null));
        SHAPES.put("qwen2.5-7b", shape("qwen2", "Qwen2ForCausalLM", 3584, 18944, 28, 28, 4, 0, 152064, 32768,
                1000000.0, 1e-6, null));
        SHAPES.put("qwen3-8b", shape("qwen3", "Qwen3ForCausalLM", 4096, 12288, 36, 32, 8, 128, 151936, 40960,
                1000000.0, 1e-6, null));
    }

    private SyntheticShapes() {
    }

    /** The names {@link #config} knows. */
    public static Iterable<String> names() {
        return SHAPES.keySet();
    }

    /**
     * The config of shape {@code name} with {@code layers} decoder layers (0 = the shape's own).
     *
     * @throws IllegalArgumentException naming the known shapes
     */
    public static JsonObject config(String name, int layers) {
        JsonObject o = SHAPES.get(name.toLowerCase(Locale.ROOT));
        if (o == null) {
            throw new IllegalArgumentException("unknown shape '" + name + "' (known: " + String.join(", ", names()) + ")");
        }
        o = o.deepCopy();
        if (layers < 0) {
            throw new IllegalArgumentException("--layers must be positive (or 0 for the shape's own), got " + layers);
        }
        if (layers > 0) {
            o.addProperty("num_hidden_layers", layers);
        }
        return o;
    }

    /** A plain llama config of any size (RoPE theta 10000, eps 1e-5, untied): the engine benchmarks' shapes. */
    static JsonObject llama(int hidden, int intermediate, int layers, int heads, int kvHeads, int vocab, int context) {
        return shape("llama", "LlamaForCausalLM", hidden, intermediate, layers, heads, kvHeads, 0, vocab, context,
                10000.0, 1e-5, null);
    }

    private static JsonObject shape(String type, String arch, int hidden, int intermediate, int layers, int heads,
                                    int kvHeads, int headDim, int vocab, int context, double theta, double eps,
                                    JsonObject rope) {
        JsonObject o = new JsonObject();
        JsonArray a = new JsonArray();
        a.add(arch);
        o.add("architectures", a);
        o.addProperty("model_type", type);
        o.addProperty("hidden_size", hidden);
        o.addProperty("intermediate_size", intermediate);
        o.addProperty("num_hidden_layers", layers);
        o.addProperty("num_attention_heads", heads);
        o.addProperty("num_key_value_heads", kvHeads);
        if (headDim > 0) {
            o.addProperty("head_dim", headDim);
        }
        o.addProperty("vocab_size", vocab);
        o.addProperty("max_position_embeddings", context);
        o.addProperty("rope_theta", theta);
        o.add("rope_scaling", rope);
        o.addProperty("rms_norm_eps", eps);
        o.addProperty("hidden_act", "silu");
        o.addProperty("tie_word_embeddings", false);
        o.addProperty("bos_token_id", 0);
        o.addProperty("eos_token_id", 1);
        return o;
    }
}
