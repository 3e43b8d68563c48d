package dev.cmoe.model.arch;

import java.util.List;

/**
 * Qwen3: Qwen2's layout without the q/k/v biases ({@code attention_bias}, default false, covers q,
 * k, v and o), plus an RMSNorm over head_dim on every query and key head before RoPE.
 */
final class Qwen3 {
    static final Architecture ARCH = new Architecture("qwen3", List.of("Qwen3ForCausalLM"), f -> {
        boolean bias = f.optBool("attention_bias", false);
        return new Architecture.Features(bias, bias, true, QwenWindow.size(f), QwenWindow.fromLayer(f));
    });

    private Qwen3() {
    }
}
