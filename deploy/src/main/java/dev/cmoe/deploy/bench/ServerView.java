package dev.cmoe.deploy.bench;

import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * What the server's own metrics said over a run: peaks and final values of the queue, the
 * running batch, the KV cache and process memory, requests by status, and the expert loads.
 * Leaks show here: after the load has drained, running sequences and KV cache bytes must be 0.
 */
public record ServerView(int scrapes, double peakQueue, double peakRunning, double peakKvBytes, double finalQueue,
                         double finalRunning, double finalKvBytes, double firstRssBytes, double peakRssBytes,
                         double finalRssBytes, double firstHeapBytes, double finalHeapBytes,
                         Map<String, Long> requestsByStatus, ExpertLoad expertLoad, List<ExpertLoad.Interval> timeline,
                         List<Memory> memory, String scrapeFailures) {
    public static final String QUEUE = "cmoe_queue_depth";
    public static final String RUNNING = "cmoe_running_sequences";
    public static final String KV = "cmoe_kv_cache_bytes";
    public static final String RSS = "process_resident_memory_bytes";
    public static final String HEAP = "jvm_memory_used_bytes";
    public static final String COMMITTED = "jvm_memory_committed_bytes";
    public static final String REQUESTS = "cmoe_requests_total";

    /**
     * The process's memory at one scrape, in bytes (NaN where the server does not say).
     *
     * @param nativeBytes resident memory outside the JVM's committed pools: engine tensors, threads, malloc
     */
    public record Memory(double seconds, double rssBytes, double heapBytes, double nativeBytes) {
    }

    /** Summarises {@code scrapes} (in time order); null when there are fewer than two. */
    public static ServerView of(List<MetricsScraper.Scrape> scrapes, String failures) {
        if (scrapes.size() < 2) {
            return null;
        }
        MetricsScraper.Scrape first = scrapes.getFirst();
        MetricsScraper.Scrape last = scrapes.getLast();
        Map<String, Long> requests = new TreeMap<>();
        for (PrometheusText.Sample s : last.samples()) {
            if (s.name().equals(REQUESTS) && s.label("status") != null) {
                double before = first.value(REQUESTS, "status", s.label("status"));
                requests.put(s.label("status"), Math.round(s.value() - (Double.isNaN(before) ? 0 : before)));
            }
        }
        return new ServerView(scrapes.size(), peak(scrapes, QUEUE), peak(scrapes, RUNNING), peak(scrapes, KV),
                last.sum(QUEUE), last.sum(RUNNING), last.sum(KV), first.sum(RSS), peak(scrapes, RSS), last.sum(RSS),
                heap(first), heap(last), requests, ExpertLoad.between(first, last), ExpertLoad.timeline(scrapes),
                scrapes.stream().map(s -> new Memory(s.t() / 1e9, s.sum(RSS), heap(s), nativeBytes(s))).toList(),
                failures);
    }

    /**
     * Resident memory that the JVM's own pools do not account for (RSS minus the committed heap
     * and non-heap): the engine's tensors and buffers. It stays flat however the garbage
     * collector sizes the heap, so a leak of native tensors shows in it alone.
     */
    static double nativeBytes(MetricsScraper.Scrape s) {
        double committed = s.sum(COMMITTED);
        return Double.isNaN(committed) ? Double.NaN : s.sum(RSS) - committed;
    }

    static double peak(List<MetricsScraper.Scrape> scrapes, String name) {
        double peak = Double.NaN;
        for (MetricsScraper.Scrape s : scrapes) {
            double v = s.sum(name);
            if (!Double.isNaN(v)) {
                peak = Double.isNaN(peak) ? v : Math.max(peak, v);
            }
        }
        return peak;
    }

    /** Heap in use: the sum of jvm_memory_used_bytes{area="heap"} over pools. */
    static double heap(MetricsScraper.Scrape s) {
        double sum = 0;
        boolean any = false;
        for (PrometheusText.Sample x : s.samples()) {
            if (x.name().equals(HEAP) && "heap".equals(x.label("area"))) {
                sum += x.value();
                any = true;
            }
        }
        return any ? sum : Double.NaN;
    }
}
