package dev.cmoe.model.arch;

import dev.cmoe.model.config.ConfigFields;
import java.util.List;
import java.util.function.Function;

/**
 * One decoder family as a small description: its config.json names and how the fields that
 * differ between families switch the decoder's per-layer features on. Everything the families
 * share (sizes, heads, RoPE, norms) is read once by {@code ModelConfig}; the tensor names are the
 * shared {@link TensorNames} table. The registry of all of them is {@link Architectures}.
 *
 * @param modelType config.json's {@code model_type}
 * @param classNames the {@code architectures} entries transformers writes for it
 * @param features reads the family's own fields of a config
 */
public record Architecture(String modelType, List<String> classNames, Function<ConfigFields, Features> features) {

    public Architecture {
        classNames = List.copyOf(classNames);
    }

    /**
     * The per-layer features of the LLaMA recipe that a family switches on.
     *
     * @param qkvBias q, k and v projections have biases (added before RoPE)
     * @param outputBias the attention output projection has a bias
     * @param qkNorm an RMSNorm over head_dim on every query and key head before RoPE (Qwen3)
     * @param slidingWindow attention window in tokens, 0 for full causal attention
     * @param windowFromLayer the first layer that uses the window (Qwen's max_window_layers), 0 for all
     */
    public record Features(boolean qkvBias, boolean outputBias, boolean qkNorm, int slidingWindow,
                           int windowFromLayer) {
    }
}
