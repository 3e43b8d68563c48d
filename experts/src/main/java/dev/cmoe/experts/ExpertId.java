package dev.cmoe.experts;

/**
 * Names one routed expert of a carved model, so routers, workers and metrics agree on which.
 *
 * @param layer the decoder layer
 * @param expert j, the routed expert's index within the layer (0 … N_r−1)
 */
public record ExpertId(int layer, int expert) {
    public ExpertId {
        if (layer < 0 || expert < 0) {
            throw new IllegalArgumentException("expert id needs a layer and an expert ≥ 0, got (" + layer + ", "
                    + expert + ")");
        }
    }

    /** The actor name of this expert under its worker, e.g. {@code layer-3-expert-5}. */
    public String actorName() {
        return "layer-" + layer + "-expert-" + expert;
    }

    @Override
    public String toString() {
        return "(" + layer + ", " + expert + ")";
    }
}
