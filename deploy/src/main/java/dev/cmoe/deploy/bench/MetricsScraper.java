package dev.cmoe.deploy.bench;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

/**
 * Reads the server's Prometheus endpoint on a fixed period during a run, so expert loads, queue
 * depth, running sequences, KV cache bytes and memory can be followed over time, and differences
 * between two scrapes give what happened in between (per-expert tokens of one phase).
 */
public final class MetricsScraper implements AutoCloseable {
    /** Prefixes of the samples kept: the server's own and process memory. */
    private static final String[] KEEP = {"cmoe_", "process_resident_memory", "jvm_memory_used_bytes",
        "jvm_memory_committed_bytes"};
    private static final int MAX_SCRAPES = 100_000; // one a second for a day: the memory bound of a soak

    /** The samples of one scrape, taken at {@code t} nanoseconds since the run's origin. */
    public record Scrape(long t, List<PrometheusText.Sample> samples) {
        /** The sum over label sets of metric {@code name} (NaN when absent). */
        public double sum(String name) {
            double s = 0;
            boolean any = false;
            for (PrometheusText.Sample x : samples) {
                if (x.name().equals(name)) {
                    s += x.value();
                    any = true;
                }
            }
            return any ? s : Double.NaN;
        }

        /** The value of {@code name} with label {@code key} = {@code value} (NaN when absent). */
        public double value(String name, String key, String value) {
            for (PrometheusText.Sample x : samples) {
                if (x.name().equals(name) && value.equals(x.label(key))) {
                    return x.value();
                }
            }
            return Double.NaN;
        }
    }

    private final URI endpoint;
    private final LongSupplier clock;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final List<Scrape> scrapes = new ArrayList<>();
    private final String token; // null: scrapes send no Authorization header
    private ScheduledExecutorService timer;
    private int failures;
    private String lastFailure = "";

    /**
     * @param endpoint e.g. http://127.0.0.1:9464/metrics
     * @param clock nanoseconds since the run's origin
     */
    public MetricsScraper(URI endpoint, LongSupplier clock) {
        this(endpoint, clock, null);
    }

    /** As above; every scrape sends {@code token} as a bearer token when it is not null. */
    public MetricsScraper(URI endpoint, LongSupplier clock, String token) {
        this.endpoint = endpoint;
        this.clock = clock;
        this.token = token;
    }

    /** Parses {@code http://HOST:PORT/metrics}, {@code HOST:PORT} or a port on 127.0.0.1. */
    public static URI endpoint(String spec) {
        String s = spec.strip();
        if (s.matches("\\d+")) {
            s = "127.0.0.1:" + s;
        }
        if (!s.contains("://")) {
            s = "http://" + s;
        }
        URI uri = URI.create(s);
        if (uri.getHost() == null || uri.getPort() < 0) {
            throw new IllegalArgumentException("--metrics '" + spec + "' is not HOST:PORT or http://HOST:PORT/metrics");
        }
        return uri.getPath() == null || uri.getPath().isEmpty() ? uri.resolve("/metrics") : uri;
    }

    /** Scrapes every {@code period} in the background until {@link #close}. */
    public MetricsScraper start(Duration period) {
        timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "cmoe-bench-scraper");
            t.setDaemon(true);
            return t;
        });
        timer.scheduleAtFixedRate(() -> {
            try {
                scrapeNow();
            } catch (IOException e) {
                // counted and reported: a missed scrape only makes the time line coarser
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, 0, period.toMillis(), TimeUnit.MILLISECONDS);
        return this;
    }

    /** Scrapes once now and keeps the result. */
    public Scrape scrapeNow() throws IOException, InterruptedException {
        long t = clock.getAsLong();
        try {
            HttpRequest.Builder req = HttpRequest.newBuilder(endpoint).timeout(Duration.ofSeconds(10));
            if (token != null) {
                req.header("Authorization", "Bearer " + token);
            }
            HttpResponse<String> r = http.send(req.build(), HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() != 200) {
                throw new IOException("GET " + endpoint + " answered HTTP " + r.statusCode());
            }
            Scrape s = new Scrape(t, PrometheusText.parse(r.body(), KEEP));
            synchronized (this) {
                if (scrapes.size() < MAX_SCRAPES) {
                    scrapes.add(s);
                }
            }
            return s;
        } catch (IOException e) {
            synchronized (this) {
                failures++;
                lastFailure = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
            }
            throw e;
        }
    }

    public synchronized List<Scrape> scrapes() {
        return List.copyOf(scrapes);
    }

    public URI endpoint() {
        return endpoint;
    }

    /** Scrapes that failed, and why the last one did. */
    public synchronized String failures() {
        return failures == 0 ? "" : failures + " failed scrapes (last: " + lastFailure + ")";
    }

    @Override
    public void close() {
        if (timer != null) {
            timer.shutdownNow();
            try {
                timer.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt(); // the scraper thread is a daemon; leave it to end
            }
        }
    }
}
