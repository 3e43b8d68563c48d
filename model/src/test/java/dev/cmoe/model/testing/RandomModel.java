package dev.cmoe.model.testing;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.arch.TensorNames;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

/**
 * A small LLaMA-family model with seeded random weights, held in plain Java arrays so that the
 * DJL model and the double-precision reference read exactly the same numbers.
 */
public final class RandomModel implements TensorSource {
    /** A named tensor: its shape and row-major values. */
    public record Tensor(long[] shape, float[] data) {
    }

    private final ModelConfig config;
    private final Map<String, Tensor> tensors = new LinkedHashMap<>();

    private RandomModel(ModelConfig config, long seed) {
        this.config = config;
        Random r = new Random(seed);
        int d = config.hiddenSize();
        int q = config.qDim();
        int kv = config.kvDim();
        int f = config.intermediateSize();
        put(TensorNames.EMBED, r, 1.0, config.vocabSize(), d);
        for (int i = 0; i < config.numLayers(); i++) {
            String p = TensorNames.layer(i);
            norm(p + "input_layernorm.weight", r, d);
            put(p + "self_attn.q_proj.weight", r, 1 / Math.sqrt(d), q, d);
            put(p + "self_attn.k_proj.weight", r, 1 / Math.sqrt(d), kv, d);
            put(p + "self_attn.v_proj.weight", r, 1 / Math.sqrt(d), kv, d);
            put(p + "self_attn.o_proj.weight", r, 1 / Math.sqrt(q), d, q);
            if (config.attentionBias()) {
                put(p + "self_attn.q_proj.bias", r, 0.2, q);
                put(p + "self_attn.k_proj.bias", r, 0.2, kv);
                put(p + "self_attn.v_proj.bias", r, 0.2, kv);
            }
            if (config.outputBias()) {
                put(p + "self_attn.o_proj.bias", r, 0.2, d);
            }
            if (config.qkNorm()) {
                norm(p + "self_attn.q_norm.weight", r, config.headDim());
                norm(p + "self_attn.k_norm.weight", r, config.headDim());
            }
            norm(p + "post_attention_layernorm.weight", r, d);
            put(p + "mlp.gate_proj.weight", r, 1 / Math.sqrt(d), f, d);
            put(p + "mlp.up_proj.weight", r, 1 / Math.sqrt(d), f, d);
            put(p + "mlp.down_proj.weight", r, 1 / Math.sqrt(f), d, f);
        }
        norm(TensorNames.FINAL_NORM, r, d);
        if (!config.tieWordEmbeddings()) {
            put(TensorNames.LM_HEAD, r, 1 / Math.sqrt(d), config.vocabSize(), d);
        }
    }

    /** Random weights for {@code config}. */
    public static RandomModel of(ModelConfig config, long seed) {
        return new RandomModel(config, seed);
    }

    /** LLaMA with grouped-query attention (8 heads over 2 KV heads) and an untied LM head. */
    public static ModelConfig llamaConfig() {
        return config("llama", 64, 96, 2, 8, 2, 97, false, null);
    }

    /** Qwen2 with q/k/v biases, 6 heads over 2 KV heads, tied embeddings and odd sizes. */
    public static ModelConfig qwen2Config() {
        return config("qwen2", 48, 80, 2, 6, 2, 101, true, null);
    }

    /** Mistral with a sliding window short enough that the tests cross it. */
    public static ModelConfig mistralConfig(int window) {
        return config("mistral", 32, 64, 2, 4, 1, 53, false, window);
    }

    /** A config.json object of the given shape, parsed through the real config reader. */
    public static ModelConfig config(String type, int hidden, int inter, int layers, int heads, int kvHeads,
                                     int vocab, boolean tied, Integer window) {
        JsonObject o = new JsonObject();
        JsonArray arch = new JsonArray();
        arch.add(type.equals("qwen2") ? "Qwen2ForCausalLM" : type.equals("mistral") ? "MistralForCausalLM"
                : "LlamaForCausalLM");
        o.add("architectures", arch);
        o.addProperty("model_type", type);
        o.addProperty("hidden_size", hidden);
        o.addProperty("intermediate_size", inter);
        o.addProperty("num_hidden_layers", layers);
        o.addProperty("num_attention_heads", heads);
        o.addProperty("num_key_value_heads", kvHeads);
        o.addProperty("vocab_size", vocab);
        o.addProperty("max_position_embeddings", 128);
        o.addProperty("rms_norm_eps", 1e-5);
        o.addProperty("rope_theta", 10000.0);
        o.addProperty("tie_word_embeddings", tied);
        o.addProperty("hidden_act", "silu");
        o.addProperty("bos_token_id", 1);
        o.addProperty("eos_token_id", 2);
        if (window != null) {
            o.addProperty("sliding_window", window);
        }
        return ModelConfig.parse(o.toString(), "test " + type + " config");
    }

    public ModelConfig config() {
        return config;
    }

    /** The tensors in checkpoint order. */
    public Map<String, Tensor> tensors() {
        return tensors;
    }

    /** Values of tensor {@code name} (shared, do not modify). */
    public float[] values(String name) {
        Tensor t = tensors.get(name);
        if (t == null) {
            throw new IllegalArgumentException("no tensor " + name);
        }
        return t.data();
    }

    @Override
    public FloatBuffer read(String name, long... shape) {
        Tensor t = tensors.get(name);
        if (t == null) {
            throw new IllegalArgumentException("missing tensor " + name);
        }
        if (!Arrays.equals(t.shape(), shape)) {
            throw new IllegalArgumentException(name + " has shape " + Arrays.toString(t.shape()) + ", expected "
                    + Arrays.toString(shape));
        }
        return FloatBuffer.wrap(t.data());
    }

    private void put(String name, Random r, double std, long... shape) {
        float[] v = new float[Math.toIntExact(Arrays.stream(shape).reduce(1, (a, b) -> a * b))];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (r.nextGaussian() * std);
        }
        tensors.put(name, new Tensor(shape, v));
    }

    private void norm(String name, Random r, int d) {
        float[] v = new float[d];
        for (int i = 0; i < d; i++) {
            v[i] = (float) (1 + 0.2 * r.nextGaussian());
        }
        tensors.put(name, new Tensor(new long[] {d}, v));
    }
}
