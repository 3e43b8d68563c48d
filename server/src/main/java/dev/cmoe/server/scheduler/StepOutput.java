package dev.cmoe.server.scheduler;

import java.util.Map;

/**
 * What a step produced, returned by the {@link ModelRunner} to the scheduler as plain data.
 *
 * @param sampled requestId -> the token chosen for it (only entries that had a sampler)
 * @param failed requestId -> why its part of the step failed; those sequences must end
 * @param nanos wall time of the step
 */
public record StepOutput(Map<String, Sampled> sampled, Map<String, String> failed, long nanos) {

    public StepOutput {
        sampled = Map.copyOf(sampled);
        failed = Map.copyOf(failed);
    }

    /**
     * A chosen token with, when asked for, its log-probability and the most likely alternatives
     * (log-softmax of the model's raw logits, before penalties and temperature).
     *
     * @param logprobs null when the entry asked for none
     */
    public record Sampled(int token, Logprobs logprobs) {
    }

    /** The chosen token's logprob and the top alternatives, most likely first. */
    public record Logprobs(float logprob, int[] topIds, float[] topLogprobs) {
    }
}
