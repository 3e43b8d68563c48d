package dev.cmoe.server.scheduler;

/**
 * The scheduler's limits.
 *
 * @param maxBatchTokens tokens per step, decode and prefill together (the step's matrix height)
 * @param maxQueue requests waiting for admission; beyond it new requests are rejected
 * @param maxRunning sequences admitted at once; at most maxBatchTokens so every one can decode each step
 * @param maxKvBytes KV cache bytes that admitted sequences may grow to at full length; 0 = unlimited
 * @param streamWindow chunks a sequence may have in flight to its client before it is parked
 */
public record SchedulerConfig(int maxBatchTokens, int maxQueue, int maxRunning, long maxKvBytes, int streamWindow) {

    public SchedulerConfig {
        if (maxBatchTokens <= 0) {
            throw new IllegalArgumentException("max batch tokens must be > 0, got " + maxBatchTokens);
        }
        if (maxQueue < 0) {
            throw new IllegalArgumentException("max queue must be >= 0, got " + maxQueue);
        }
        if (maxRunning <= 0 || maxRunning > maxBatchTokens) {
            throw new IllegalArgumentException("max running sequences must be in [1, max batch tokens = "
                    + maxBatchTokens + "], got " + maxRunning);
        }
        if (maxKvBytes < 0) {
            throw new IllegalArgumentException("max KV bytes must be >= 0, got " + maxKvBytes);
        }
        if (streamWindow <= 0) {
            throw new IllegalArgumentException("stream window must be > 0, got " + streamWindow);
        }
    }

    /** Defaults sized for one CPU or GPU process. */
    public static SchedulerConfig defaults() {
        return new SchedulerConfig(512, 256, 64, 0, 16);
    }

    public SchedulerConfig withMaxBatchTokens(int n) {
        return new SchedulerConfig(n, maxQueue, Math.min(maxRunning, n), maxKvBytes, streamWindow);
    }

    public SchedulerConfig withMaxQueue(int n) {
        return new SchedulerConfig(maxBatchTokens, n, maxRunning, maxKvBytes, streamWindow);
    }

    public SchedulerConfig withMaxRunning(int n) {
        return new SchedulerConfig(maxBatchTokens, maxQueue, n, maxKvBytes, streamWindow);
    }

    public SchedulerConfig withMaxKvBytes(long bytes) {
        return new SchedulerConfig(maxBatchTokens, maxQueue, maxRunning, bytes, streamWindow);
    }

    public SchedulerConfig withStreamWindow(int n) {
        return new SchedulerConfig(maxBatchTokens, maxQueue, maxRunning, maxKvBytes, n);
    }
}
