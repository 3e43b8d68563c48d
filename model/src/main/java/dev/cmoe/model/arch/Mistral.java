package dev.cmoe.model.arch;

import java.util.List;

/** Mistral: llama without biases, with {@code sliding_window} (when set) on every layer. */
final class Mistral {
    static final Architecture ARCH = new Architecture("mistral", List.of("MistralForCausalLM"), f -> {
        f.requireFalse("attention_bias", "mistral attention has no biases");
        return new Architecture.Features(false, false, false, f.optPositiveInt("sliding_window", 0), 0);
    });

    private Mistral() {
    }
}
