package dev.cmoe.deploy.bench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The stress scenarios of {@code cmoe bench --scenario}: each drives its phases through a
 * {@link Workload}, reads the server's metrics, and returns the loads it ran with a
 * {@link Verdict} whose checks a broken server fails (no back-pressure, leaked sequences or KV
 * cache, requests that hang or fail with the wrong status).
 */
public final class Scenarios {
    /** A scenario's loads (one per phase) and its verdict. */
    public record Outcome(List<LoadSummary> loads, List<RequestResult> results, Verdict verdict) {
    }

    private Scenarios() {
    }

    /**
     * saturate: measures the sustainable rate with a closed loop at the server's batch limit, then
     * offers {@code factor} times that rate as Poisson arrivals. Excess requests must be refused
     * with RESOURCE_EXHAUSTED quickly, every admitted one must complete, and the server's queue,
     * batch and KV cache must stay within their limits and empty afterwards.
     */
    public static Outcome saturate(Workload w, int clients, int calibrationRequests, double factor, int requests,
                                   Duration duration) throws InterruptedException {
        List<RequestResult> calibration = w.run(LoadRunner.Plan.closed(clients, calibrationRequests, duration,
                w.timeout()), w.requests("calibrate", false, 0, 1));
        LoadSummary cal = LoadSummary.of("calibrate (closed, " + clients + ")", calibration);
        if (cal.ok() == 0 || !(cal.requestsPerSecond() > 0)) {
            throw new IllegalStateException("saturate: the calibration load completed no request (" + cal.errors()
                    + "); is the server up?");
        }
        double rate = factor * cal.requestsPerSecond();
        MetricsScraper.Scrape before = w.scrape();
        List<RequestResult> overload = w.run(LoadRunner.Plan.open(Arrivals.poisson(rate), requests, duration,
                w.timeout(), w.seed()), w.requests("overload", false, 0, 2));
        MetricsScraper.Scrape drained = w.awaitDrained();
        LoadSummary over = LoadSummary.of(String.format(Locale.ROOT, "overload %.1f req/s", rate), overload);

        Verdict.Builder v = new Verdict.Builder("saturate");
        v.figure("sustainable_req_per_s", cal.requestsPerSecond()).figure("offered_req_per_s", rate);
        int rejected = over.count("RESOURCE_EXHAUSTED");
        v.check(rejected > 0, "%d of %d calls at %.1f req/s (%.1fx the sustainable %.1f) refused with"
                + " RESOURCE_EXHAUSTED", rejected, over.issued(), rate, factor, cal.requestsPerSecond());
        Latency refusal = over.rejection();
        double quick = Math.max(1, cal.e2e().p50());
        v.check(rejected > 0 && refusal.p90() <= quick && refusal.p99() <= 1000,
                "refusals fast: p90 %.1f ms <= served E2E p50 %.1f ms, p99 %.1f ms <= 1000 ms", refusal.p90(), quick,
                refusal.p99());
        v.figure("refusal_ms", refusal);
        long admitted = overload.stream().filter(r -> !"RESOURCE_EXHAUSTED".equals(r.status())).count();
        long completed = overload.stream().filter(Scenarios::completed).count();
        v.check(completed == admitted && admitted > 0, "admitted calls completed: %d of %d (others: %s)", completed,
                admitted, others(over, Set.of("OK", "RESOURCE_EXHAUSTED")));
        memoryChecks(v, w, before, drained);
        return new Outcome(List.of(cal, over), concat(calibration, overload), v.build());
    }

    /**
     * skew: the same closed load twice, first with prompts from the text, then with prompts that
     * repeat one token, which a carved router sends to the same few experts. The server's
     * per-expert counters must show the skew (the skewed phase's max/mean tokens per expert above
     * the uniform one's) and every call must still complete. Per-device imbalance is reported for
     * the placement's devices. Given a {@code rebalance} (a cluster head), the experts are then
     * re-placed for the skewed load and the same skewed requests run again: the rebalance must
     * lose no call and lower the per-device imbalance it aims at (per layer for an EPLB plan, over
     * all layers for the head's moves).
     *
     * @param rebalance how to re-place the head's experts between the skewed phases; null: no third phase
     */
    public static Outcome skew(Workload w, int clients, int requests, Duration duration, HeadRebalance rebalance)
            throws InterruptedException {
        if (w.scraper() == null) {
            throw new IllegalArgumentException("skew reads per-expert token counts from the server's metrics:"
                    + " give --metrics HOST:PORT (the server's --metrics-port)");
        }
        LoadRunner.Plan plan = LoadRunner.Plan.closed(clients, requests, duration, w.timeout());
        MetricsScraper.Scrape s0 = w.scrape();
        List<RequestResult> uniform = w.run(plan, w.requests("uniform", false, 0, 3));
        MetricsScraper.Scrape s1 = w.scrape();
        List<RequestResult> skewed = w.run(plan, w.requests("skewed", true, 0, 4));
        MetricsScraper.Scrape s2 = w.scrape();
        requireScrapes(w, s0, s1, s2);
        ExpertLoad a = ExpertLoad.between(s0, s1);
        ExpertLoad b = ExpertLoad.between(s1, s2);
        if (a.isEmpty() && b.isEmpty()) {
            throw new IllegalArgumentException("skew needs a carved model: the server counted no routed tokens"
                    + " (cmoe_expert_tokens_total)");
        }
        LoadSummary u = LoadSummary.of("uniform prompts", uniform);
        LoadSummary k = LoadSummary.of("skewed prompts", skewed);
        Verdict.Builder v = new Verdict.Builder("skew");
        v.check(u.ok() == u.issued() && k.ok() == k.issued(), "every call completed: uniform %d/%d, skewed %d/%d",
                u.ok(), u.issued(), k.ok(), k.issued());
        v.check(!a.isEmpty() && !b.isEmpty(), "routed tokens counted in both phases: %d and %d",
                total(a), total(b));
        v.check(b.meanImbalance() > a.meanImbalance(),
                "skew visible: max/mean tokens per expert %.2f skewed > %.2f uniform (mean over layers; worst"
                        + " layer %.2f vs %.2f)", b.meanImbalance(), a.meanImbalance(), b.worstImbalance(),
                a.worstImbalance());
        v.figure("uniform_expert_max_over_mean", perLayer(a)).figure("skewed_expert_max_over_mean", perLayer(b));
        v.figure("uniform_device_max_over_mean", a.deviceImbalance())
                .figure("skewed_device_max_over_mean", b.deviceImbalance());
        v.figure("uniform_tokens_per_device", a.perDevice()).figure("skewed_tokens_per_device", b.perDevice());
        if (!b.perLayerDevice().isEmpty()) {
            v.figure("uniform_layer_device_max_over_mean", a.layerDeviceImbalances())
                    .figure("skewed_layer_device_max_over_mean", b.layerDeviceImbalances())
                    .figure("skewed_tokens_per_layer_device", b.perLayerDevice());
        }
        List<LoadSummary> loads = new ArrayList<>(List.of(u, k));
        List<RequestResult> results = concat(uniform, skewed);
        HeadRebalance.Result r = null;
        if (rebalance != null) {
            try {
                r = rebalance.apply(b);
            } catch (RuntimeException e) { // refused or timed out: the verdict says so, with the head's reason
                v.check(false, "%s rebalance applied: %s", rebalance.mode().label, e.getMessage());
            }
        }
        if (r != null) {
            MetricsScraper.Scrape s3 = w.scrape();
            List<RequestResult> again = w.run(plan, w.requests("skewed", true, 0, 4)); // the same requests
            MetricsScraper.Scrape s4 = w.scrape();
            requireScrapes(w, s3, s4);
            ExpertLoad c = ExpertLoad.between(s3, s4);
            LoadSummary after = LoadSummary.of("skewed, after " + r.mode().label + " rebalance", again);
            v.check(r.replicasAdded() + r.replicasRemoved() > 0 || r.headBefore() <= 1.05, "%s", r.describe());
            v.check(after.ok() == after.issued(), "every call completed after the rebalance: %d/%d", after.ok(),
                    after.issued());
            boolean perLayer = r.mode() == HeadRebalance.Mode.PLAN && !c.perLayerDevice().isEmpty();
            double before = perLayer ? b.layerDeviceImbalance() : b.deviceImbalance();
            double now = perLayer ? c.layerDeviceImbalance() : c.deviceImbalance();
            // an already even placement (within 5%) has nothing to gain; otherwise the skew must ease
            v.check(now < before || (before <= 1.05 && now <= 1.05),
                    "rebalance evened the devices: %s max/mean %.2f -> %.2f (all layers %.2f -> %.2f); output"
                            + " %.1f -> %.1f tok/s", perLayer ? "per-layer device" : "device", before, now,
                    b.deviceImbalance(), c.deviceImbalance(), k.outputTokensPerSecond(),
                    after.outputTokensPerSecond());
            v.figure("rebalance_mode", r.mode().label).figure("rebalance_seconds", r.seconds())
                    .figure("replicas_added", r.replicasAdded()).figure("replicas_retired", r.replicasRemoved())
                    .figure("spare_slots", r.spareSlots())
                    .figure("head_estimate_device_max_over_mean", List.of(r.headBefore(), r.headAfter()))
                    .figure("rebalanced_device_max_over_mean", c.deviceImbalance())
                    .figure("rebalanced_tokens_per_device", c.perDevice())
                    .figure("placement_after", r.placement()).figure("plan_after", r.plan());
            if (!c.perLayerDevice().isEmpty()) {
                v.figure("rebalanced_layer_device_max_over_mean", c.layerDeviceImbalances())
                        .figure("rebalanced_tokens_per_layer_device", c.perLayerDevice());
            }
            loads.add(after);
            results = concat(results, again);
        }
        v.figure("e2e_p50_ms", loads.stream().map(l -> l.e2e().p50()).toList());
        v.figure("output_tok_per_s", loads.stream().map(LoadSummary::outputTokensPerSecond).toList());
        return new Outcome(loads, results, v.build());
    }

    private static void requireScrapes(Workload w, MetricsScraper.Scrape... scrapes) {
        for (MetricsScraper.Scrape s : scrapes) {
            if (s == null) {
                throw new IllegalStateException("skew: the metrics endpoint " + w.scraper().endpoint()
                        + " did not answer: " + w.scraper().failures());
            }
        }
    }

    /**
     * cancel-storm: a closed load in which half the calls are cancelled by their client after a
     * random number of tokens. The server must notice every cancel, the other calls must complete,
     * and after the load nothing may be left: no running sequence, no KV cache bytes.
     */
    public static Outcome cancelStorm(Workload w, int clients, int requests, Duration duration)
            throws InterruptedException {
        if (w.scraper() == null) {
            throw new IllegalArgumentException("cancel-storm checks for leaks in the server's metrics: give --metrics"
                    + " HOST:PORT (the server's --metrics-port)");
        }
        MetricsScraper.Scrape before = w.scrape();
        List<RequestResult> results = w.run(LoadRunner.Plan.closed(clients, requests, duration, w.timeout()),
                w.requests("cancel-storm", false, 0.5, 5));
        long end = w.now();
        MetricsScraper.Scrape drained = w.awaitDrained();
        double drainMs = (w.now() - end) / 1e6;
        LoadSummary l = LoadSummary.of("half cancelled", results);
        long cancelled = results.stream().filter(RequestResult::cancelledByClient).count();
        long cancelledOk = results.stream().filter(r -> r.cancelledByClient() && "CANCELLED".equals(r.status()))
                .count();
        long kept = results.size() - cancelled;
        long keptDone = results.stream().filter(r -> !r.cancelledByClient() && completed(r)).count();
        Verdict.Builder v = new Verdict.Builder("cancel-storm");
        v.check(cancelled > 0 && cancelledOk == cancelled, "%d of %d calls cancelled mid-stream, %d ended CANCELLED",
                cancelled, results.size(), cancelledOk);
        v.check(keptDone == kept, "the other calls completed: %d of %d (others: %s)", keptDone, kept,
                others(l, Set.of("OK", "CANCELLED")));
        // Not a check: a call whose last token was already sent when the client cancelled ends OK
        // on the server, CANCELLED on the client.
        v.figure("server_cancelled", delta(before, drained, ServerView.REQUESTS, "status", "CANCELLED"));
        v.check(drained != null && drained.sum(ServerView.RUNNING) == 0 && drained.sum(ServerView.QUEUE) == 0,
                "no leaked sequences: running %s, queued %s after the load", fmt(drained, ServerView.RUNNING),
                fmt(drained, ServerView.QUEUE));
        v.check(drained != null && drained.sum(ServerView.KV) == 0, "no leaked KV cache: %s bytes after the load"
                + " (drained in %.0f ms)", fmt(drained, ServerView.KV), drainMs);
        v.figure("drain_ms", drainMs).figure("cancelled", cancelled);
        return new Outcome(List.of(l), results, v.build());
    }

    /**
     * soak: one long load whose latency and memory must stay flat: the last third of the run
     * against the first (E2E p50 within 25%, TTFT p99 within 50%; native memory — resident minus
     * the JVM's committed pools, where the engine's tensors live — within 10% + 64 MiB, and the
     * whole resident set too when the server is a process of its own), no failed call, and nothing
     * left afterwards. With the server in this JVM the resident set also holds the bench's growing
     * results and scrapes, and the heap grows as the collector sees fit, so there it is reported,
     * not checked. Documented, not run in CI.
     */
    public static Outcome soak(Workload w, LoadRunner.Plan plan) throws InterruptedException {
        MetricsScraper.Scrape before = w.scrape();
        List<RequestResult> results = w.run(plan, w.requests("soak", false, 0, 6));
        MetricsScraper.Scrape drained = w.awaitDrained();
        long first = results.stream().mapToLong(RequestResult::start).min().orElse(0);
        long last = results.stream().mapToLong(RequestResult::start).max().orElse(0);
        long third = (last - first) / 3;
        List<RequestResult> early = results.stream().filter(r -> r.start() < first + third).toList();
        List<RequestResult> late = results.stream().filter(r -> r.start() >= last - third).toList();
        LoadSummary all = LoadSummary.of("soak", results);
        LoadSummary e = LoadSummary.of("first third", early);
        LoadSummary l = LoadSummary.of("last third", late);
        Verdict.Builder v = new Verdict.Builder("soak");
        v.check(all.ok() == all.issued(), "every call OK: %d of %d (others: %s)", all.ok(), all.issued(),
                others(all, Set.of("OK")));
        v.check(l.e2e().p50() <= 1.25 * e.e2e().p50(), "E2E p50 flat: last third %.1f ms <= 1.25 x first %.1f ms",
                l.e2e().p50(), e.e2e().p50());
        v.check(l.ttft().p99() <= 1.5 * e.ttft().p99(), "TTFT p99 flat: last third %.1f ms <= 1.5 x first %.1f ms",
                l.ttft().p99(), e.ttft().p99());
        if (w.scraper() != null) {
            List<MetricsScraper.Scrape> scrapes = w.scraper().scrapes();
            double nativeEarly = mean(scrapes, first, first + third, ServerView::nativeBytes);
            double nativeLate = mean(scrapes, last - third, last, ServerView::nativeBytes);
            v.check(!Double.isNaN(nativeEarly) && nativeLate <= 1.10 * nativeEarly + 64.0 * (1 << 20),
                    "native memory flat (resident minus the JVM's committed pools): last third %s <= 1.1 x first %s"
                            + " + 64 MiB", BenchReport.mib(nativeLate), BenchReport.mib(nativeEarly));
            double rssEarly = mean(scrapes, first, first + third, s -> s.sum(ServerView.RSS));
            double rssLate = mean(scrapes, last - third, last, s -> s.sum(ServerView.RSS));
            if (w.inProcess()) {
                v.figure("resident_first_last_third_bytes", List.of(rssEarly, rssLate));
            } else {
                v.check(!Double.isNaN(rssEarly) && rssLate <= 1.10 * rssEarly + 64.0 * (1 << 20),
                        "resident memory flat: last third %s <= 1.1 x first %s + 64 MiB", BenchReport.mib(rssLate),
                        BenchReport.mib(rssEarly));
            }
            v.figure("native_first_last_third_bytes", List.of(nativeEarly, nativeLate));
            memoryChecks(v, w, before, drained);
        }
        return new Outcome(List.of(e, l, all), results, v.build());
    }

    /**
     * worker-loss: a load during which the process {@code killPid} (an expert worker of a cluster)
     * is killed with SIGKILL after {@code killAfter}. Every admitted call must complete or fail with
     * UNAVAILABLE; none may hang (no DEADLINE_EXCEEDED, no call left open). Reports the latency
     * spike: calls in flight at the kill and after it against calls before it. With
     * {@code reference}, the same requests run once first without a kill, and every call that
     * completes in both runs must have produced the same tokens (greedy or seeded sampling is
     * deterministic; a failover that recomputes a step differently shows here).
     */
    public static Outcome workerLoss(Workload w, LoadRunner.Plan plan, long killPid, Duration killAfter,
                                     boolean reference) throws InterruptedException {
        ProcessHandle victim = ProcessHandle.of(killPid).orElseThrow(() -> new IllegalArgumentException(
                "--kill-pid " + killPid + ": no such process"));
        List<RequestResult> before = reference ? w.run(plan, w.requests("worker-loss", false, 0, 7)) : List.of();
        AtomicLong killedAt = new AtomicLong(-1);
        ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
        List<RequestResult> results;
        try {
            timer.schedule(() -> {
                killedAt.set(w.now());
                victim.destroyForcibly();
            }, killAfter.toMillis(), TimeUnit.MILLISECONDS);
            results = w.run(plan, w.requests("worker-loss", false, 0, 7));
        } finally {
            timer.shutdownNow();
            timer.awaitTermination(5, TimeUnit.SECONDS);
        }
        boolean dead = victim.onExit().completeOnTimeout(null, 5, TimeUnit.SECONDS).join() != null
                || !victim.isAlive();
        long kill = killedAt.get();
        LoadSummary all = LoadSummary.of("worker loss", results);
        Verdict.Builder v = new Verdict.Builder("worker-loss");
        v.check(kill >= 0 && dead, "process %d killed at %.1f s", killPid, kill / 1e9);
        long admitted = results.stream().filter(r -> !"RESOURCE_EXHAUSTED".equals(r.status())
                && !LoadRunner.CLIENT_OVERFLOW.equals(r.status())).count();
        long settled = results.stream().filter(r -> completed(r) || "UNAVAILABLE".equals(r.status())).count();
        v.check(settled == admitted, "admitted calls completed or failed UNAVAILABLE: %d of %d (others: %s)",
                settled, admitted, others(all, Set.of("OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED")));
        long hung = results.stream().filter(r -> "HUNG".equals(r.status()) || "DEADLINE_EXCEEDED".equals(r.status()))
                .count();
        v.check(hung == 0, "none hung: %d calls hit their deadline or never ended", hung);
        if (reference) {
            java.util.Map<Long, RequestResult> ref = new java.util.HashMap<>();
            before.forEach(r -> ref.put(r.index(), r));
            long compared = 0;
            long differ = 0;
            for (RequestResult r : results) {
                RequestResult q = ref.get(r.index());
                if (q != null && completed(q) && completed(r)) {
                    compared++;
                    differ += java.util.Arrays.equals(q.tokenIds(), r.tokenIds()) ? 0 : 1;
                }
            }
            v.check(compared > 0 && differ == 0, "same tokens as without the kill: %d of %d calls completed in both"
                    + " runs differ", differ, compared);
            v.figure("token_mismatches", differ);
        }
        List<RequestResult> earlier = results.stream().filter(r -> kill < 0 || r.end() < kill).toList();
        List<RequestResult> spanning = results.stream().filter(r -> kill >= 0 && r.end() >= kill).toList();
        LoadSummary b = LoadSummary.of("before the kill", earlier);
        LoadSummary a = LoadSummary.of("at and after the kill", spanning);
        v.figure("e2e_p99_ms_before", b.e2e().p99()).figure("e2e_p99_ms_after", a.e2e().p99());
        v.figure("e2e_max_ms_after", a.e2e().max()).figure("unavailable", all.count("UNAVAILABLE"));
        v.check(true, "latency spike: E2E p99 %.1f ms before, %.1f ms at/after the kill (max %.1f ms); %d"
                + " UNAVAILABLE", b.e2e().p99(), a.e2e().p99(), a.e2e().max(), all.count("UNAVAILABLE"));
        return new Outcome(List.of(b, a, all), results, v.build());
    }

    /** Back-pressure and leak checks shared by saturate and soak. */
    private static void memoryChecks(Verdict.Builder v, Workload w, MetricsScraper.Scrape before,
                                     MetricsScraper.Scrape drained) {
        if (w.scraper() == null || drained == null) {
            v.check(false, "memory bounded: no server metrics to check (give --metrics)");
            return;
        }
        List<MetricsScraper.Scrape> window = w.scraper().scrapes().stream()
                .filter(s -> before == null || s.t() >= before.t()).toList();
        double peakQueue = ServerView.peak(window, ServerView.QUEUE);
        double peakRunning = ServerView.peak(window, ServerView.RUNNING);
        double peakKv = ServerView.peak(window, ServerView.KV);
        Workload.Limits limits = w.limits();
        v.check(limits.maxQueue() < 0 || peakQueue <= limits.maxQueue(), "queue peak %.0f <= --max-queue %s",
                peakQueue, limits.maxQueue() < 0 ? "(unknown)" : limits.maxQueue());
        v.check(limits.maxRunning() < 0 || peakRunning <= limits.maxRunning(), "batch peak %.0f <= --max-running %s",
                peakRunning, limits.maxRunning() < 0 ? "(unknown)" : limits.maxRunning());
        v.check(limits.kvBytesBound() < 0 || peakKv <= limits.kvBytesBound(), "KV cache peak %s <= %s",
                BenchReport.mib(peakKv), limits.kvBytesBound() < 0 ? "(unknown)" : BenchReport.mib(limits.kvBytesBound()));
        v.check(drained.sum(ServerView.RUNNING) == 0 && drained.sum(ServerView.KV) == 0,
                "nothing left after the load: running %s, KV %s bytes", fmt(drained, ServerView.RUNNING),
                fmt(drained, ServerView.KV));
        v.figure("peak_queue", peakQueue).figure("peak_running", peakRunning).figure("peak_kv_bytes", peakKv);
        v.figure("rss_bytes_before", before == null ? Double.NaN : before.sum(ServerView.RSS))
                .figure("rss_bytes_peak", ServerView.peak(window, ServerView.RSS))
                .figure("rss_bytes_after", drained.sum(ServerView.RSS));
    }

    /** Ended OK with a Final that says it finished normally. */
    static boolean completed(RequestResult r) {
        return r.ok() && Set.of("LENGTH", "EOS_TOKEN", "STOP_SEQUENCE").contains(r.finishReason());
    }

    private static String others(LoadSummary l, Set<String> expected) {
        StringBuilder b = new StringBuilder();
        l.statuses().forEach((s, n) -> {
            if (!expected.contains(s)) {
                b.append(b.isEmpty() ? "" : ", ").append(s).append(' ').append(n);
            }
        });
        return b.isEmpty() ? "none" : b.toString();
    }

    private static double delta(MetricsScraper.Scrape a, MetricsScraper.Scrape b, String name, String key,
                                String value) {
        if (b == null) {
            return Double.NaN;
        }
        double after = b.value(name, key, value);
        double before = a == null ? Double.NaN : a.value(name, key, value);
        return (Double.isNaN(after) ? 0 : after) - (Double.isNaN(before) ? 0 : before);
    }

    private static String fmt(MetricsScraper.Scrape s, String name) {
        return s == null ? "n/a" : String.format(Locale.ROOT, "%.0f", s.sum(name));
    }

    private static long total(ExpertLoad l) {
        return l.perLayer().values().stream().flatMapToLong(java.util.Arrays::stream).sum();
    }

    private static List<Double> perLayer(ExpertLoad l) {
        List<Double> out = new ArrayList<>();
        l.perLayer().keySet().forEach(layer -> out.add(l.imbalance(layer)));
        return out;
    }

    private static double mean(List<MetricsScraper.Scrape> scrapes, long from, long to,
                               java.util.function.ToDoubleFunction<MetricsScraper.Scrape> f) {
        return scrapes.stream().filter(s -> s.t() >= from && s.t() <= to).mapToDouble(f)
                .filter(x -> !Double.isNaN(x)).average().orElse(Double.NaN);
    }

    private static <T> List<T> concat(List<T> a, List<T> b) {
        List<T> out = new ArrayList<>(a);
        out.addAll(b);
        return out;
    }
}
