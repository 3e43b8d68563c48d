package dev.cmoe.model.llama;

/** Hugging Face tensor names of LLaMA-family checkpoints, written once so loader and writers agree. */
public final class WeightNames {
    public static final String EMBED = "model.embed_tokens.weight";
    public static final String FINAL_NORM = "model.norm.weight";
    public static final String LM_HEAD = "lm_head.weight";

    private WeightNames() {
    }

    /** Prefix of every tensor of decoder layer {@code i}, e.g. {@code model.layers.3.}. */
    public static String layer(int i) {
        return "model.layers." + i + ".";
    }
}
