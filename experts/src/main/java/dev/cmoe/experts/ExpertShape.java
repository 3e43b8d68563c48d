package dev.cmoe.experts;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;

/**
 * The dimensions every host of a carved model's routed experts must agree on: a worker started on
 * a different checkpoint than the head's is refused instead of answering with wrong shapes.
 *
 * @param layers decoder layers (each an MoE layer)
 * @param routed N_r, routed experts per layer
 * @param hidden d, the model's hidden size (the width of every row an expert receives)
 * @param expertSize m, neurons per routed expert
 */
public record ExpertShape(int layers, int routed, int hidden, int expertSize) {
    public ExpertShape {
        if (layers <= 0 || routed <= 0 || hidden <= 0 || expertSize <= 0) {
            throw new IllegalArgumentException("expert shape needs positive layers, routed experts, hidden and expert "
                    + "size, got " + layers + ", " + routed + ", " + hidden + ", " + expertSize);
        }
    }

    /** The shape of a carved checkpoint. */
    public static ExpertShape of(ModelConfig config, MoeConfig moe) {
        return new ExpertShape(config.numLayers(), moe.routed(), config.hiddenSize(), moe.expertSize());
    }

    /** Device memory one routed expert takes: gate, up and down, (m, d) each, float32. */
    public long expertBytes() {
        return 3L * expertSize * hidden * Float.BYTES;
    }

    /** Whether {@code id} names an expert of this model. */
    public boolean contains(ExpertId id) {
        return id.layer() < layers && id.expert() < routed;
    }

    @Override
    public String toString() {
        return layers + " layers × " + routed + " routed experts of " + expertSize + " × " + hidden;
    }
}
