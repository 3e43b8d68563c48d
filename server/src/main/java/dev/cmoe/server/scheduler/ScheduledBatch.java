package dev.cmoe.server.scheduler;

import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.sample.Sampler;
import java.util.List;

/**
 * One step's work, decided by the scheduler and executed by a {@link ModelRunner}: plain data
 * across the seam, so the runner needs no scheduler state and tests can build batches by hand.
 * The caches and samplers are lent to the runner for the step; the scheduler touches neither
 * until the step is done.
 *
 * @param step the scheduler's step counter
 */
public record ScheduledBatch(long step, List<Entry> entries) {

    public ScheduledBatch {
        entries = List.copyOf(entries);
    }

    /**
     * One sequence's share of the step.
     *
     * @param tokens a prefill chunk or the single last generated token, appended after the cache
     * @param sampler non-null when a token is to be chosen after these tokens (decode, last prefill chunk)
     * @param history prompt and generated tokens so far, for the repetition penalty
     * @param banned token ids that must not be chosen now (stop tokens before min_new_tokens)
     * @param logprobs top alternatives to report, or -1 for none
     */
    public record Entry(String requestId, KvCache cache, int[] tokens, Sampler sampler, int[] history, int[] banned,
                        int logprobs) {
    }

    /** Tokens in the step: the height of the step's activation matrix. */
    public int tokenCount() {
        return entries.stream().mapToInt(e -> e.tokens().length).sum();
    }
}
