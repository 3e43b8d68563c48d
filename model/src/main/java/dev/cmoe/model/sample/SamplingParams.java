package dev.cmoe.model.sample;

/**
 * How one request picks its tokens, validated once at the edge so the decode loop never sees an
 * impossible setting.
 *
 * @param temperature 0 picks the most likely token (greedy); higher flattens the distribution
 * @param topK keep only the k most likely tokens; 0 disables
 * @param topP keep the smallest set of most likely tokens whose probability reaches p; 1 disables
 * @param minP drop tokens less likely than minP × the top token's probability; 0 disables
 * @param repetitionPenalty divide positive (multiply negative) logits of already-seen tokens; 1 disables
 * @param seed seeds the request's random generator: the same seed gives the same tokens
 * @param presencePenalty OpenAI's: subtracted from the logit of every token already generated; 0 disables
 * @param frequencyPenalty OpenAI's: subtracted once per earlier occurrence in the generated tokens; 0 disables
 */
public record SamplingParams(double temperature, int topK, double topP, double minP, double repetitionPenalty,
                             long seed, double presencePenalty, double frequencyPenalty) {

    /** OpenAI's bound on both additive penalties. */
    public static final double MAX_ADDITIVE_PENALTY = 2;

    /** Without the additive penalties (the gRPC API and the CLI have none). */
    public SamplingParams(double temperature, int topK, double topP, double minP, double repetitionPenalty,
                          long seed) {
        this(temperature, topK, topP, minP, repetitionPenalty, seed, 0, 0);
    }

    public SamplingParams {
        if (!(temperature >= 0) || Double.isInfinite(temperature)) {
            throw new IllegalArgumentException("temperature must be >= 0, got " + temperature);
        }
        if (topK < 0) {
            throw new IllegalArgumentException("top_k must be >= 0 (0 disables it), got " + topK);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        }
        if (!(minP >= 0 && minP < 1)) {
            throw new IllegalArgumentException("min_p must be in [0, 1), got " + minP);
        }
        if (!(repetitionPenalty > 0) || Double.isInfinite(repetitionPenalty)) {
            throw new IllegalArgumentException("repetition_penalty must be > 0, got " + repetitionPenalty);
        }
        if (!(Math.abs(presencePenalty) <= MAX_ADDITIVE_PENALTY)) {
            throw new IllegalArgumentException("presence_penalty must be in [-2, 2], got " + presencePenalty);
        }
        if (!(Math.abs(frequencyPenalty) <= MAX_ADDITIVE_PENALTY)) {
            throw new IllegalArgumentException("frequency_penalty must be in [-2, 2], got " + frequencyPenalty);
        }
    }

    /** Whether the presence or frequency penalty is on. */
    public boolean hasAdditivePenalties() {
        return presencePenalty != 0 || frequencyPenalty != 0;
    }

    /** Deterministic most-likely-token decoding. */
    public static SamplingParams greedy() {
        return new SamplingParams(0, 0, 1, 0, 1, 0);
    }

    /** Plain sampling at {@code temperature} with {@code seed} and no truncation. */
    public static SamplingParams random(double temperature, long seed) {
        return new SamplingParams(temperature, 0, 1, 0, 1, seed);
    }

    public boolean isGreedy() {
        return temperature == 0;
    }
}
