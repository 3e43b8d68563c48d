package dev.cmoe.model.arch;

import java.util.List;

/** Llama (1, 2, 3.x): the base recipe; {@code attention_bias} puts biases on q, k, v and o. */
final class Llama {
    static final Architecture ARCH = new Architecture("llama", List.of("LlamaForCausalLM"), f -> {
        boolean bias = f.optBool("attention_bias", false);
        return new Architecture.Features(bias, bias, false, 0, 0);
    });

    private Llama() {
    }
}
