package dev.cmoe.deploy.bench;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import dev.cmoe.carve.report.Charts;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Everything one {@code cmoe bench} run measured: the loads (one per concurrency level or
 * scenario phase), the server's view from its metrics, and a scenario's verdict. Prints the
 * table, writes {@code bench.json} atomically and draws the PNG charts.
 *
 * @param title what was run against what
 * @param setup the flags and facts of the run (model, target, lengths, seed)
 * @param loads one summary per load or phase, in run order
 * @param concurrency the concurrency of each load for a sweep, else empty
 * @param server the server's metrics over the run, or null without a metrics endpoint
 * @param verdict the scenario's verdict, or null for a plain load
 */
public record BenchReport(String title, Map<String, Object> setup, List<LoadSummary> loads, List<Integer> concurrency,
                          ServerView server, Verdict verdict) {

    /** The table a person reads. */
    public void print(PrintStream out) {
        out.println("== " + title);
        setup.forEach((k, v) -> out.printf(Locale.ROOT, "   %-18s %s%n", k, v));
        if (loads.size() > 1) {
            out.printf(Locale.ROOT, "%n%-24s %6s %6s %8s %9s %9s %9s %9s %9s %9s  %s%n", "load", "ok", "calls",
                    "req/s", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "ITL p99", "E2E p99", "errors");
            for (LoadSummary l : loads) {
                out.printf(Locale.ROOT, "%-24s %6d %6d %8.2f %9.1f %9s %9s %9s %9s %9s  %s%n", l.label(), l.ok(),
                        l.issued(), l.requestsPerSecond(), l.outputTokensPerSecond(), ms(l.ttft().p50()),
                        ms(l.ttft().p99()), ms(l.tpot().p50()), ms(l.itl().p99()), ms(l.e2e().p99()), l.errors());
            }
        }
        for (LoadSummary l : loads) {
            out.printf(Locale.ROOT, "%n-- %s: %d of %d calls OK in %.1f s; %.2f req/s, %.1f output tok/s (%d prompt,"
                            + " %d output tokens)%n", l.label(), l.ok(), l.issued(), l.seconds(), l.requestsPerSecond(),
                    l.outputTokensPerSecond(), l.promptTokens(), l.outputTokens());
            out.printf(Locale.ROOT, "   %-22s %9s %9s %9s %9s %9s %7s%n", "latency (ms)", "mean", "p50", "p90", "p99",
                    "max", "n");
            row(out, "TTFT", l.ttft());
            row(out, "TPOT", l.tpot());
            row(out, "inter-token", l.itl());
            row(out, "end-to-end", l.e2e());
            if (l.rejection().count() > 0) {
                row(out, "RESOURCE_EXHAUSTED in", l.rejection());
            }
            out.println("   errors by status: " + l.errors());
        }
        if (server != null) {
            out.printf(Locale.ROOT, "%n-- server metrics (%d scrapes%s)%n", server.scrapes(),
                    server.scrapeFailures().isEmpty() ? "" : ", " + server.scrapeFailures());
            out.printf(Locale.ROOT, "   queue peak %s, running peak %s, KV cache peak %s; after the run: running %s,"
                            + " KV %s%n", num(server.peakQueue()), num(server.peakRunning()), mib(server.peakKvBytes()),
                    num(server.finalRunning()), mib(server.finalKvBytes()));
            out.printf(Locale.ROOT, "   resident memory first %s, peak %s, last %s; heap first %s, last %s%n",
                    mib(server.firstRssBytes()), mib(server.peakRssBytes()), mib(server.finalRssBytes()),
                    mib(server.firstHeapBytes()), mib(server.finalHeapBytes()));
            out.println("   requests by status (server): " + server.requestsByStatus());
            ExpertLoad e = server.expertLoad();
            if (e.isEmpty()) {
                out.println("   expert load: no routed tokens (a dense model, or none were counted)");
            } else {
                out.println("   expert load, max/mean tokens per expert (1.00 = even):");
                e.perLayer().forEach((layer, tokens) -> out.printf(Locale.ROOT,
                        "     layer %-3d %5.2f   tokens per expert %s%n", layer, e.imbalance(layer),
                        java.util.Arrays.toString(tokens)));
                out.printf(Locale.ROOT, "   per device %s: max/mean %.2f%n", e.perDevice(), e.deviceImbalance());
            }
        }
        if (verdict != null) {
            out.println();
            out.println(verdict.line());
        }
    }

    private static void row(PrintStream out, String name, Latency l) {
        out.printf(Locale.ROOT, "   %-22s %9s %9s %9s %9s %9s %7d%n", name, ms(l.mean()), ms(l.p50()), ms(l.p90()),
                ms(l.p99()), ms(l.max()), l.count());
    }

    private static String ms(double v) {
        return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, v < 10 ? "%.2f" : "%.1f", v);
    }

    private static String num(double v) {
        return Double.isNaN(v) ? "n/a" : String.format(Locale.ROOT, "%.0f", v);
    }

    static String mib(double bytes) {
        return Double.isNaN(bytes) ? "n/a" : String.format(Locale.ROOT, "%.1f MiB", bytes / (1 << 20));
    }

    /** Writes the report as JSON to {@code file} through a temporary file and an atomic rename. */
    public void writeJson(Path file) throws IOException {
        Gson gson = new GsonBuilder().setPrettyPrinting().serializeSpecialFloatingPointValues().create();
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("title", title);
        json.put("setup", setup);
        json.put("loads", loads);
        if (!concurrency.isEmpty()) {
            json.put("concurrency", concurrency);
        }
        if (server != null) {
            Map<String, Object> s = new LinkedHashMap<>();
            s.put("scrapes", server.scrapes());
            s.put("peak_queue", server.peakQueue());
            s.put("peak_running", server.peakRunning());
            s.put("peak_kv_bytes", server.peakKvBytes());
            s.put("final_running", server.finalRunning());
            s.put("final_kv_bytes", server.finalKvBytes());
            s.put("rss_bytes", Map.of("first", server.firstRssBytes(), "peak", server.peakRssBytes(),
                    "last", server.finalRssBytes()));
            s.put("requests_by_status", server.requestsByStatus());
            s.put("expert_tokens_per_layer", server.expertLoad().perLayer());
            s.put("expert_tokens_per_device", server.expertLoad().perDevice());
            Map<String, Double> imbalance = new LinkedHashMap<>();
            server.expertLoad().perLayer().keySet().forEach(l -> imbalance.put("layer " + l,
                    server.expertLoad().imbalance(l)));
            s.put("expert_max_over_mean", imbalance);
            s.put("device_max_over_mean", server.expertLoad().deviceImbalance());
            List<Map<String, Object>> timeline = new ArrayList<>();
            for (ExpertLoad.Interval i : server.timeline()) {
                timeline.add(Map.of("from_s", i.from() / 1e9, "to_s", i.to() / 1e9,
                        "tokens_per_layer", i.load().perLayer(), "tokens_per_device", i.load().perDevice()));
            }
            s.put("expert_load_over_time", timeline);
            s.put("memory_over_time", server.memory());
            json.put("server", s);
        }
        if (verdict != null) {
            json.put("verdict", Map.of("scenario", verdict.scenario(), "pass", verdict.pass(), "line", verdict.line(),
                    "checks", verdict.checks(), "figures", verdict.figures()));
        }
        Files.createDirectories(file.toAbsolutePath().getParent());
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        try {
            Files.writeString(tmp, gson.toJson(json), StandardCharsets.UTF_8);
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** Draws the PNGs into {@code dir} and returns their paths. */
    public List<Path> drawCharts(Path dir) throws IOException {
        Files.createDirectories(dir);
        List<Path> written = new ArrayList<>();
        List<String> percentiles = List.of("p50", "p90", "p99");
        LoadSummary main = loads.getLast();
        Map<String, double[]> latency = new LinkedHashMap<>();
        latency.put("TTFT", pct(main.ttft()));
        latency.put("TPOT", pct(main.tpot()));
        latency.put("inter-token", pct(main.itl()));
        latency.put("end-to-end", pct(main.e2e()));
        Path p = dir.resolve("latency.png");
        Charts.bars(p, "Latency percentiles, " + main.label(), "percentile", "ms", percentiles, latency);
        written.add(p);
        if (concurrency.size() > 1) {
            double[] x = concurrency.stream().mapToDouble(Integer::doubleValue).toArray();
            p = dir.resolve("throughput-vs-concurrency.png");
            Charts.lines(p, "Throughput vs concurrency", "concurrent clients", "per second",
                    x, Map.of("output tokens/s", loads.stream().mapToDouble(LoadSummary::outputTokensPerSecond).toArray(),
                            "requests/s × 10", loads.stream().mapToDouble(l -> 10 * l.requestsPerSecond()).toArray()));
            written.add(p);
            p = dir.resolve("latency-vs-concurrency.png");
            Map<String, double[]> lat = new LinkedHashMap<>();
            lat.put("TTFT p50", loads.stream().mapToDouble(l -> l.ttft().p50()).toArray());
            lat.put("TTFT p99", loads.stream().mapToDouble(l -> l.ttft().p99()).toArray());
            lat.put("E2E p50", loads.stream().mapToDouble(l -> l.e2e().p50()).toArray());
            lat.put("E2E p99", loads.stream().mapToDouble(l -> l.e2e().p99()).toArray());
            Charts.lines(p, "Latency vs concurrency", "concurrent clients", "ms", x, lat);
            written.add(p);
        }
        if (server != null && server.memory().stream().filter(m -> !Double.isNaN(m.rssBytes())).count() >= 2) {
            List<ServerView.Memory> mem = server.memory();
            Map<String, double[]> series = new LinkedHashMap<>();
            series.put("resident", mem.stream().mapToDouble(m -> m.rssBytes() / (1 << 20)).toArray());
            series.put("native (resident - JVM committed)", mem.stream().mapToDouble(m -> m.nativeBytes() / (1 << 20))
                    .toArray());
            series.put("heap used", mem.stream().mapToDouble(m -> m.heapBytes() / (1 << 20)).toArray());
            p = dir.resolve("memory-over-time.png");
            Charts.lines(p, "Server process memory", "time (s)", "MiB",
                    mem.stream().mapToDouble(ServerView.Memory::seconds).toArray(), series);
            written.add(p);
        }
        if (server != null && !server.timeline().isEmpty()) {
            List<ExpertLoad.Interval> tl = server.timeline();
            double[] t = tl.stream().mapToDouble(i -> i.to() / 1e9).toArray();
            Map<String, double[]> perLayer = new LinkedHashMap<>();
            for (int layer : server.expertLoad().perLayer().keySet()) {
                perLayer.put("layer " + layer, tl.stream().mapToDouble(i -> i.load().imbalance(layer)).toArray());
            }
            p = dir.resolve("expert-imbalance-over-time.png");
            Charts.lines(p, "Expert load balance over time (max/mean tokens per expert)", "time (s)", "max / mean",
                    t, perLayer);
            written.add(p);
            Map<String, double[]> perDevice = new LinkedHashMap<>();
            for (String device : server.expertLoad().perDevice().keySet()) {
                perDevice.put(device, tl.stream().mapToDouble(i -> i.load().perDevice().getOrDefault(device, 0L)
                        / ((i.to() - i.from()) / 1e9)).toArray());
            }
            p = dir.resolve("device-load-over-time.png");
            Charts.lines(p, "Expert tokens per second per device", "time (s)", "tokens/s", t, perDevice);
            written.add(p);
            int worst = worstLayer(server.expertLoad());
            Map<String, double[]> perExpert = new LinkedHashMap<>();
            long[] total = server.expertLoad().perLayer().get(worst);
            for (int j = 0; j < total.length; j++) {
                final int expert = j;
                perExpert.put("expert " + j, tl.stream().mapToDouble(i -> {
                    long[] v = i.load().perLayer().get(worst);
                    return v == null || expert >= v.length ? 0 : v[expert] / ((i.to() - i.from()) / 1e9);
                }).toArray());
            }
            p = dir.resolve("expert-load-over-time.png");
            Charts.lines(p, "Tokens per second per expert, layer " + worst + " (the least balanced)", "time (s)",
                    "tokens/s", t, perExpert);
            written.add(p);
        }
        return written;
    }

    private static int worstLayer(ExpertLoad load) {
        int worst = load.perLayer().keySet().iterator().next();
        for (int l : load.perLayer().keySet()) {
            if (load.imbalance(l) > load.imbalance(worst)) {
                worst = l;
            }
        }
        return worst;
    }

    private static double[] pct(Latency l) {
        return new double[] {nan0(l.p50()), nan0(l.p90()), nan0(l.p99())};
    }

    private static double nan0(double v) {
        return Double.isNaN(v) ? 0 : v;
    }
}
