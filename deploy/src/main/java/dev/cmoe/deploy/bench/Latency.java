package dev.cmoe.deploy.bench;

import java.util.function.ToLongFunction;
import org.HdrHistogram.Histogram;

/**
 * Mean and percentiles of one latency, in milliseconds, from an HdrHistogram at three significant
 * digits (the error is below 0.1%, far under the machine's noise).
 *
 * @param count how many values
 */
public record Latency(long count, double mean, double p50, double p90, double p99, double max) {
    private static final Latency NONE = new Latency(0, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN);

    /** Summarises nanosecond values; negative values (meaning "none") are skipped. */
    public static Latency ofNanos(long[] nanos) {
        Histogram h = new Histogram(3);
        for (long v : nanos) {
            if (v >= 0) {
                h.recordValue(Math.max(1, v / 1_000)); // microseconds
            }
        }
        if (h.getTotalCount() == 0) {
            return NONE;
        }
        return new Latency(h.getTotalCount(), h.getMean() / 1e3, ms(h, 50), ms(h, 90), ms(h, 99),
                h.getMaxValue() / 1e3);
    }

    /** Summarises one nanosecond figure of each request. */
    public static <T> Latency of(Iterable<T> items, ToLongFunction<T> nanos) {
        java.util.List<Long> v = new java.util.ArrayList<>();
        for (T t : items) {
            v.add(nanos.applyAsLong(t));
        }
        return ofNanos(v.stream().mapToLong(Long::longValue).toArray());
    }

    private static double ms(Histogram h, double percentile) {
        return h.getValueAtPercentile(percentile) / 1e3;
    }
}
