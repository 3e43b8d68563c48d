package dev.cmoe.model.train;

/**
 * The shape of the LoRA adapters of an adaptation run: every adapted weight W (out, in) gains
 * ΔW = (alpha / rank) · B·A with A (rank, in) and B (out, rank), and the adapter's input passes
 * through dropout while training (the base path never does).
 *
 * @param rank r, the inner size of each adapter
 * @param alpha the numerator of the adapter's scale alpha / r
 * @param dropout probability of zeroing an adapter input element while training, in [0, 1)
 */
public record LoraSpec(int rank, double alpha, double dropout) {
    public LoraSpec {
        if (rank < 1) {
            throw new IllegalArgumentException("LoRA rank must be at least 1, got " + rank);
        }
        if (!(alpha > 0) || Double.isInfinite(alpha)) {
            throw new IllegalArgumentException("LoRA alpha must be a positive number, got " + alpha);
        }
        if (!(dropout >= 0 && dropout < 1)) {
            throw new IllegalArgumentException("LoRA dropout must be in [0, 1), got " + dropout);
        }
    }

    /** alpha / r, the factor on B·A. */
    public double scale() {
        return alpha / rank;
    }
}
