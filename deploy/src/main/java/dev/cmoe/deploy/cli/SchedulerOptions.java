package dev.cmoe.deploy.cli;

import dev.cmoe.server.scheduler.SchedulerConfig;
import picocli.CommandLine.Option;

/**
 * The batching and admission limits of a server, declared once as a picocli mixin for every
 * command that starts one ({@code serve}, and {@code bench} for its in-process server).
 * {@code --max-queue} and {@code --max-running} stay null when not given, so a caller can tell
 * an operator's choice from the default (bench's saturate picks smaller ones).
 */
final class SchedulerOptions {
    static final int DEFAULT_MAX_QUEUE = 256;
    static final int DEFAULT_MAX_RUNNING = 64;

    @Option(names = "--max-batch-tokens", defaultValue = "512", description = "Tokens per step (default: ${DEFAULT-VALUE}).")
    int maxBatchTokens;

    @Option(names = "--max-queue", description = "Requests waiting for admission before RESOURCE_EXHAUSTED (HTTP 429)"
            + " (default: " + DEFAULT_MAX_QUEUE + ").")
    Integer maxQueue;

    @Option(names = "--max-running", description = "Sequences in the batch at once (default: " + DEFAULT_MAX_RUNNING
            + ").")
    Integer maxRunning;

    @Option(names = "--max-kv-bytes", defaultValue = "0", description = "KV cache budget in bytes; 0 = unlimited.")
    long maxKvBytes;

    int queue() {
        return maxQueue != null ? maxQueue : DEFAULT_MAX_QUEUE;
    }

    /** Sequences at once: never more than the tokens of a step, since each takes one per step. */
    int running() {
        return Math.min(maxRunning != null ? maxRunning : DEFAULT_MAX_RUNNING, maxBatchTokens);
    }

    SchedulerConfig config() {
        return new SchedulerConfig(maxBatchTokens, queue(), running(), maxKvBytes,
                SchedulerConfig.defaults().streamWindow());
    }
}
