package dev.cmoe.server.grpc;

import io.grpc.Status;
import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Logs the calls that clients got wrong (bad requests, bad tokens, malformed bytes) at most once
 * per interval, as one line with the count by status code and the latest description: anyone can
 * send bad calls, so one log line (let alone a stack trace) per call would let them flood the log.
 */
public final class ClientErrorLog {
    private static final Logger LOG = LoggerFactory.getLogger(ClientErrorLog.class);
    /** How often a line is written at most, unless set otherwise. */
    public static final long DEFAULT_INTERVAL_NANOS = TimeUnit.SECONDS.toNanos(10);

    private final long intervalNanos;
    private final LongSupplier clock;
    private final Consumer<String> sink;
    private final Map<Status.Code, Long> counts = new EnumMap<>(Status.Code.class);
    private long total;
    private long windowStart;
    private boolean logged;
    private String latest;

    /** Logs to this class's SLF4J logger at WARN, at most every {@link #DEFAULT_INTERVAL_NANOS}. */
    public ClientErrorLog() {
        this(DEFAULT_INTERVAL_NANOS, System::nanoTime, LOG::warn);
    }

    /**
     * @param clock nanoseconds, monotonic
     * @param sink receives each summary line
     */
    public ClientErrorLog(long intervalNanos, LongSupplier clock, Consumer<String> sink) {
        if (intervalNanos <= 0) {
            throw new IllegalArgumentException("interval must be > 0 ns, got " + intervalNanos);
        }
        this.intervalNanos = intervalNanos;
        this.clock = clock;
        this.sink = sink;
    }

    /**
     * Counts one client error. The first after a quiet interval is logged at once; the ones that
     * follow within the interval are summed into the next line, written by the first call after the
     * interval has passed (or by {@link #flush}).
     */
    public void record(Status.Code code, String description) {
        String line = null;
        synchronized (this) {
            long now = clock.getAsLong();
            counts.merge(code, 1L, Long::sum);
            total++;
            latest = code + (description == null ? "" : ": " + abbreviate(description));
            if (!logged || now - windowStart >= intervalNanos) {
                line = summary(now);
            }
        }
        if (line != null) {
            sink.accept(line);
        }
    }

    /** Writes the pending summary, if any (e.g. at shutdown). */
    public void flush() {
        String line = null;
        synchronized (this) {
            if (total > 0) {
                line = summary(clock.getAsLong());
            }
        }
        if (line != null) {
            sink.accept(line);
        }
    }

    private String summary(long now) {
        String line = total + (total == 1 ? " client error" : " client errors")
                + (logged ? " in the last " + TimeUnit.NANOSECONDS.toSeconds(now - windowStart) + " s" : "")
                + " " + counts + ", latest " + latest;
        counts.clear();
        total = 0;
        windowStart = now;
        logged = true;
        return line;
    }

    private static String abbreviate(String s) {
        return s.length() <= 200 ? s : s.substring(0, 200) + "...";
    }
}
