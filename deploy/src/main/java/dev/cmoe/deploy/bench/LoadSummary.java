package dev.cmoe.deploy.bench;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The conventional serving figures of one load (or one phase of a scenario), computed from the
 * client's own records: request and output-token throughput, TTFT, time per output token,
 * inter-token latency, end-to-end latency, and how many calls ended with each gRPC status.
 *
 * @param label what the load was ("concurrency 8", "uniform", ...)
 * @param issued calls issued
 * @param ok calls that ended OK
 * @param statuses gRPC status name -> calls that ended with it (OK included)
 * @param seconds from the first call's start to the last call's end
 * @param requestsPerSecond OK calls per second
 * @param outputTokensPerSecond tokens received by OK calls per second
 * @param ttft time to first token of calls that got one
 * @param tpot per OK call: (last token − first token) / (tokens − 1)
 * @param itl every gap between consecutive tokens of a call
 * @param e2e start to end of OK calls
 * @param rejection start to end of RESOURCE_EXHAUSTED calls: how fast overload is refused
 */
public record LoadSummary(String label, int issued, int ok, Map<String, Integer> statuses, double seconds,
                          double requestsPerSecond, double outputTokensPerSecond, long outputTokens, long promptTokens,
                          Latency ttft, Latency tpot, Latency itl, Latency e2e, Latency rejection) {

    public static LoadSummary of(String label, List<RequestResult> results) {
        Map<String, Integer> statuses = new TreeMap<>();
        long first = Long.MAX_VALUE;
        long last = Long.MIN_VALUE;
        List<RequestResult> ok = new ArrayList<>();
        List<RequestResult> rejected = new ArrayList<>();
        List<Long> gaps = new ArrayList<>();
        long outputTokens = 0;
        long promptTokens = 0;
        for (RequestResult r : results) {
            statuses.merge(r.status(), 1, Integer::sum);
            first = Math.min(first, r.start());
            last = Math.max(last, r.end());
            if (r.ok()) {
                ok.add(r);
                outputTokens += r.outputTokens();
                promptTokens += r.promptTokens();
            } else if ("RESOURCE_EXHAUSTED".equals(r.status())) {
                rejected.add(r);
            }
            long[] t = r.tokenTimes();
            for (int i = 1; i < t.length; i++) {
                gaps.add(t[i] - t[i - 1]);
            }
        }
        double seconds = results.isEmpty() ? 0 : (last - first) / 1e9;
        return new LoadSummary(label, results.size(), ok.size(), statuses, seconds,
                seconds > 0 ? ok.size() / seconds : Double.NaN, seconds > 0 ? outputTokens / seconds : Double.NaN,
                outputTokens, promptTokens,
                Latency.of(results, RequestResult::ttft), Latency.of(ok, RequestResult::tpot),
                Latency.ofNanos(gaps.stream().mapToLong(Long::longValue).toArray()),
                Latency.of(ok, RequestResult::e2e), Latency.of(rejected, RequestResult::e2e));
    }

    /** Calls that ended with {@code status}. */
    public int count(String status) {
        return statuses.getOrDefault(status, 0);
    }

    /** Every status but OK, as "NAME n, NAME n", or "none". */
    public String errors() {
        StringBuilder b = new StringBuilder();
        statuses.forEach((s, n) -> {
            if (!"OK".equals(s)) {
                b.append(b.isEmpty() ? "" : ", ").append(s).append(' ').append(n);
            }
        });
        return b.isEmpty() ? "none" : b.toString();
    }
}
