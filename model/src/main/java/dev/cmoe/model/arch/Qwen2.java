package dev.cmoe.model.arch;

import java.util.List;

/**
 * Qwen2 / Qwen2.5: llama with biases on q, k and v (not o); the sliding window applies only with
 * {@code use_sliding_window}, and then from layer {@code max_window_layers} on.
 */
final class Qwen2 {
    static final Architecture ARCH = new Architecture("qwen2", List.of("Qwen2ForCausalLM"), f ->
            new Architecture.Features(true, false, false, QwenWindow.size(f), QwenWindow.fromLayer(f)));

    private Qwen2() {
    }
}
