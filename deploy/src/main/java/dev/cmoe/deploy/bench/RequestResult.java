package dev.cmoe.deploy.bench;

/**
 * What happened to one benchmark request, as the client saw it. Times are nanoseconds since the
 * start of the run, so requests of one run can be placed on one time line (spikes, flatness).
 *
 * @param index the request's number in issue order
 * @param phase which part of a scenario issued it ("load", "uniform", "skewed", ...)
 * @param start when the call was issued
 * @param end when the call ended (its last message or its error)
 * @param tokenTimes arrival time of each generated token, in order
 * @param tokenIds the generated tokens, in order (compared across runs by worker-loss)
 * @param promptTokens the prompt length the server reported (0 when it reported none)
 * @param status the gRPC status code name; in-stream errors report their code
 * @param finishReason the Final message's reason, or "" when none came
 * @param cancelledByClient the client cancelled the call on purpose (cancel-storm)
 * @param message the error description, or ""
 */
public record RequestResult(long index, String phase, long start, long end, long[] tokenTimes, int[] tokenIds,
                            int promptTokens,
                            String status, String finishReason, boolean cancelledByClient, String message) {

    public boolean ok() {
        return "OK".equals(status);
    }

    public int outputTokens() {
        return tokenTimes.length;
    }

    /** Time to first token in nanoseconds, or -1 without one. */
    public long ttft() {
        return tokenTimes.length == 0 ? -1 : tokenTimes[0] - start;
    }

    /** Time per output token after the first (nanoseconds), or -1 with fewer than two tokens. */
    public long tpot() {
        int n = tokenTimes.length;
        return n < 2 ? -1 : (tokenTimes[n - 1] - tokenTimes[0]) / (n - 1);
    }

    public long e2e() {
        return end - start;
    }
}
