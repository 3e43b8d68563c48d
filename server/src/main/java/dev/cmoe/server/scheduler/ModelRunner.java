package dev.cmoe.server.scheduler;

import dev.cmoe.model.llama.KvCache;

/**
 * Executes the scheduler's steps on a model. Contract: {@link #run} is called on the blocking
 * model dispatcher, one step at a time, and may block (the carved MoE FFN waits for expert
 * actors); a failure of one sequence is reported in {@link StepOutput#failed} and must not fail
 * the others; an exception from {@code run} means the whole step failed.
 */
public interface ModelRunner {

    /** A KV cache for one sequence of at most {@code maxLength} tokens; the scheduler closes it. */
    KvCache newCache(int maxLength);

    /** KV cache bytes one token occupies, for admission against a memory budget. */
    long kvBytesPerToken();

    /** The model's context length in tokens. */
    int contextLength();

    /** Runs one step: appends every entry's tokens to its cache and samples where asked. */
    StepOutput run(ScheduledBatch batch);
}
