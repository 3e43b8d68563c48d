package dev.cmoe.model.arch;

/**
 * The Hugging Face tensor names of the LLaMA-family checkpoints (llama, mistral, qwen2, qwen3 share
 * them), written once so the loader, the trainers, the carver and the synthetic-model writer read
 * the same names. Layer tensors are {@code model.layers.N.} + one of the suffixes below.
 */
public final class TensorNames {
    public static final String EMBED = "model.embed_tokens.weight";
    public static final String FINAL_NORM = "model.norm.weight";
    public static final String LM_HEAD = "lm_head.weight";

    public static final String ATTN_NORM = "input_layernorm.weight";
    public static final String Q = "self_attn.q_proj";
    public static final String K = "self_attn.k_proj";
    public static final String V = "self_attn.v_proj";
    public static final String O = "self_attn.o_proj";
    public static final String Q_NORM = "self_attn.q_norm.weight";
    public static final String K_NORM = "self_attn.k_norm.weight";
    public static final String FFN_NORM = "post_attention_layernorm.weight";
    public static final String MLP = "mlp.";
    public static final String GATE = "mlp.gate_proj";
    public static final String UP = "mlp.up_proj";
    public static final String DOWN = "mlp.down_proj";

    private TensorNames() {
    }

    /** Prefix of every tensor of decoder layer {@code i}, e.g. {@code model.layers.3.}. */
    public static String layer(int i) {
        return "model.layers." + i + ".";
    }

    /** The weight of projection {@code proj} (e.g. {@link #Q}) of layer {@code i}. */
    public static String weight(int i, String proj) {
        return layer(i) + proj + ".weight";
    }

    /** The bias of projection {@code proj} of layer {@code i}. */
    public static String bias(int i, String proj) {
        return layer(i) + proj + ".bias";
    }

    /** Whether {@code name} is a norm weight (of a layer, a head or the final norm): ones at initialisation. */
    public static boolean isNorm(String name) {
        return name.endsWith("norm.weight");
    }

    /** A norm or other full-named tensor {@code suffix} (e.g. {@link #ATTN_NORM}) of layer {@code i}. */
    public static String of(int i, String suffix) {
        return layer(i) + suffix;
    }
}
