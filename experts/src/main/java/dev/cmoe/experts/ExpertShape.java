package dev.cmoe.experts;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.safetensors.DType;
import java.util.Objects;

/**
 * The dimensions every host of a carved model's routed experts must agree on: a worker started on
 * a different checkpoint than the head's is refused instead of answering with wrong shapes.
 *
 * @param layers decoder layers (each an MoE layer)
 * @param routed N_r, routed experts per layer
 * @param hidden d, the model's hidden size (the width of every row an expert receives)
 * @param expertSize m, neurons per routed expert
 * @param dtype what the experts' weights are held and multiplied in
 */
public record ExpertShape(int layers, int routed, int hidden, int expertSize, DType dtype) {
    public ExpertShape {
        Objects.requireNonNull(dtype, "dtype");
        if (layers <= 0 || routed <= 0 || hidden <= 0 || expertSize <= 0) {
            throw new IllegalArgumentException("expert shape needs positive layers, routed experts, hidden and expert "
                    + "size, got " + layers + ", " + routed + ", " + hidden + ", " + expertSize);
        }
    }

    /** A float32 shape: tests and in-memory models. */
    public ExpertShape(int layers, int routed, int hidden, int expertSize) {
        this(layers, routed, hidden, expertSize, DType.F32);
    }

    /** The shape of a carved checkpoint whose experts compute in {@code dtype}. */
    public static ExpertShape of(ModelConfig config, MoeConfig moe, DType dtype) {
        return new ExpertShape(config.numLayers(), moe.routed(), config.hiddenSize(), moe.expertSize(), dtype);
    }

    /** Device memory one routed expert takes: gate, up and down, (m, d) each, in {@link #dtype}. */
    public long expertBytes() {
        return 3L * expertSize * hidden * dtype.byteSize();
    }

    /** Whether {@code id} names an expert of this model. */
    public boolean contains(ExpertId id) {
        return id.layer() < layers && id.expert() < routed;
    }

    @Override
    public String toString() {
        return layers + " layers × " + routed + " routed experts of " + expertSize + " × " + hidden + " in "
                + dtype.shortName();
    }
}
