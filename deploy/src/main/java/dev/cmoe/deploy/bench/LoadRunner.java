package dev.cmoe.deploy.bench;

import dev.cmoe.proto.v1.GenerateRequest;
import io.grpc.Channel;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * Drives one load against a server (through a {@link Transport}: gRPC or HTTP) and records every request: closed loop (a fixed number
 * of clients, each sending its next request when the last one ends) or open loop (requests
 * arrive on a random schedule whatever the server does, which is how overload is produced).
 * Bounded twice: it stops issuing after {@code requests} or after {@code duration}, whichever
 * comes first, and every call carries a deadline, so a run always ends.
 */
public final class LoadRunner {
    /** Status recorded for an open-loop arrival dropped because the client already had too many calls open. */
    public static final String CLIENT_OVERFLOW = "CLIENT_OVERFLOW";

    /** One request to issue: what to send, after how many tokens to cancel it (0 = never), and its phase. */
    public record Issue(GenerateRequest request, int cancelAfterTokens, String phase) {
    }

    /** Makes the requests of a run, one per call, in issue order (called from one thread). */
    @FunctionalInterface
    public interface Requests {
        Issue next(long index);
    }

    /** Told about every finished request (from gRPC threads): progress bars. */
    @FunctionalInterface
    public interface Listener {
        void finished(RequestResult result);
    }

    /**
     * @param concurrency closed loop: clients at once; null for an open loop
     * @param arrivals open loop: the arrival process; null for a closed loop
     * @param requests requests to issue; 0 = as many as fit in {@code duration}
     * @param duration stop issuing after this long
     * @param requestTimeout the deadline of each call
     * @param maxInFlight open loop: arrivals beyond this many open calls are dropped as {@link #CLIENT_OVERFLOW}
     * @param seed the arrival schedule's seed
     */
    public record Plan(Integer concurrency, Arrivals arrivals, int requests, Duration duration, Duration requestTimeout,
                       int maxInFlight, long seed) {
        public Plan {
            if ((concurrency == null) == (arrivals == null)) {
                throw new IllegalArgumentException("a load is either closed (--concurrency) or open (--rate), not "
                        + (concurrency == null ? "neither" : "both"));
            }
            if (concurrency != null && concurrency < 1) {
                throw new IllegalArgumentException("--concurrency must be >= 1, got " + concurrency);
            }
            if (requests < 0) {
                throw new IllegalArgumentException("--requests must be >= 0, got " + requests);
            }
            if (duration == null || duration.isNegative() || duration.isZero()) {
                throw new IllegalArgumentException("a load needs a positive duration bound, got " + duration);
            }
            if (requestTimeout == null || requestTimeout.isNegative() || requestTimeout.isZero()) {
                throw new IllegalArgumentException("--timeout must be positive, got " + requestTimeout);
            }
            if (maxInFlight < 1) {
                throw new IllegalArgumentException("max in-flight must be >= 1, got " + maxInFlight);
            }
        }

        public static Plan closed(int concurrency, int requests, Duration duration, Duration requestTimeout) {
            return new Plan(concurrency, null, requests, duration, requestTimeout, Integer.MAX_VALUE, 0);
        }

        public static Plan open(Arrivals arrivals, int requests, Duration duration, Duration requestTimeout, long seed) {
            return new Plan(null, arrivals, requests, duration, requestTimeout, 10_000, seed);
        }

        public String describe() {
            String bound = (requests > 0 ? requests + " requests within " : "for ") + human(duration);
            return concurrency != null ? "closed loop, concurrency " + concurrency + ", " + bound
                    : "open loop, " + arrivals.describe() + ", " + bound;
        }
    }

    private final Transport transport;
    private final long origin; // System.nanoTime() at the start of the whole run: time zero of every result

    /**
     * @param origin {@code System.nanoTime()} that results are measured from; phases of one scenario share it
     */
    public LoadRunner(Channel channel, long origin) {
        this(new GrpcTransport(channel), origin);
    }

    /** A runner that sends its requests through {@code transport}. */
    public LoadRunner(Transport transport, long origin) {
        this.transport = transport;
        this.origin = origin;
    }

    /** Nanoseconds since the origin. */
    public long now() {
        return System.nanoTime() - origin;
    }

    /** Runs {@code plan} and returns every request's result in issue order. */
    public List<RequestResult> run(Plan plan, Requests requests, Listener listener) throws InterruptedException {
        Map<Long, Transport.Call> open = new ConcurrentHashMap<>();
        List<RequestResult> results = java.util.Collections.synchronizedList(new ArrayList<>());
        Semaphore clients = plan.concurrency() != null ? new Semaphore(plan.concurrency()) : null;
        long stopAt = now() + plan.duration().toNanos();
        SplittableRandom schedule = new SplittableRandom(plan.seed());
        long nextArrival = now();
        for (long index = 0; plan.requests() == 0 || index < plan.requests(); index++) {
            if (plan.concurrency() != null) {
                long left = stopAt - now();
                if (left <= 0 || !clients.tryAcquire(left, TimeUnit.NANOSECONDS)) {
                    break;
                }
            } else {
                nextArrival += plan.arrivals().nextGapNanos(schedule);
                if (nextArrival >= stopAt) {
                    break;
                }
                for (long wait = nextArrival - now(); wait > 0; wait = nextArrival - now()) {
                    LockSupport.parkNanos(wait);
                    if (Thread.interrupted()) {
                        throw new InterruptedException("load interrupted");
                    }
                }
            }
            Issue issue = requests.next(index);
            if (open.size() >= plan.maxInFlight()) {
                long t = now();
                RequestResult dropped = new RequestResult(index, issue.phase(), t, t, new long[0], new int[0], 0,
                        CLIENT_OVERFLOW,
                        "", false, "more than " + plan.maxInFlight() + " calls open");
                results.add(dropped);
                listener.finished(dropped);
                continue;
            }
            long callIndex = index;
            // registered before it starts, so a call that ends at once is removed, never left behind
            java.util.concurrent.atomic.AtomicReference<Transport.Call> started = new java.util.concurrent.atomic.AtomicReference<>();
            open.put(index, () -> {
                Transport.Call c = started.get();
                if (c != null) {
                    c.abandon();
                }
            });
            started.set(transport.start(index, issue, this::now, plan.requestTimeout(), r -> {
                open.remove(callIndex);
                results.add(r);
                if (clients != null) {
                    clients.release();
                }
                listener.finished(r);
            }));
        }
        // Every call has a deadline, so this wait is bounded; the slack covers the deadline's delivery.
        long drainUntil = System.nanoTime() + plan.requestTimeout().toNanos() + TimeUnit.SECONDS.toNanos(10);
        while (!open.isEmpty() && System.nanoTime() < drainUntil) {
            Thread.sleep(5);
        }
        for (Transport.Call c : List.copyOf(open.values())) {
            c.abandon(); // past its deadline and still not ended: report it as hung, do not wait forever
        }
        List<RequestResult> sorted = new ArrayList<>(results);
        sorted.sort(Comparator.comparingLong(RequestResult::index));
        return sorted;
    }

    static String human(Duration d) {
        long s = d.toSeconds();
        return s >= 60 && s % 60 == 0 ? s / 60 + " min" : s > 0 ? s + " s" : d.toMillis() + " ms";
    }
}
