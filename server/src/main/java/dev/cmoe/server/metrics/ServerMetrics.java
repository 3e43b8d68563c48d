package dev.cmoe.server.metrics;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.MultiGauge;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The server's Prometheus-facing numbers in one place, so the scheduler and the gRPC layer
 * report through a few named calls instead of touching Micrometer themselves.
 */
public final class ServerMetrics {
    private final MeterRegistry registry;
    private final AtomicLong queued = new AtomicLong();
    private final AtomicLong running = new AtomicLong();
    private final AtomicLong kvBytes = new AtomicLong();
    private final AtomicLong tokensPerSecond = new AtomicLong();
    private final DistributionSummary batchSequences;
    private final DistributionSummary batchTokens;
    private final Timer ttft;
    private final Timer interToken;
    private final Timer queueTime;
    private final Timer stepTime;
    private final Counter generated;
    private final MultiGauge deviceExperts;
    private final AtomicLong unplaced = new AtomicLong();

    public ServerMetrics(MeterRegistry registry) {
        this.registry = registry;
        Gauge.builder("cmoe.queue.depth", queued, AtomicLong::get).description("requests waiting for admission")
                .register(registry);
        Gauge.builder("cmoe.running.sequences", running, AtomicLong::get).description("sequences in the batch")
                .register(registry);
        Gauge.builder("cmoe.kv.cache.bytes", kvBytes, AtomicLong::get).description("KV cache bytes in use")
                .baseUnit("bytes").register(registry);
        Gauge.builder("cmoe.tokens.per.second", tokensPerSecond, AtomicLong::get)
                .description("tokens generated per second in the last step").register(registry);
        batchSequences = DistributionSummary.builder("cmoe.batch.sequences").description("sequences per step")
                .publishPercentileHistogram().register(registry);
        batchTokens = DistributionSummary.builder("cmoe.batch.tokens").description("tokens per step")
                .publishPercentileHistogram().register(registry);
        ttft = latency("cmoe.time.to.first.token", "from arrival to the first generated token");
        interToken = latency("cmoe.inter.token.latency", "between consecutive tokens of one request");
        queueTime = latency("cmoe.queue.time", "from arrival to admission");
        stepTime = latency("cmoe.step.time", "one model step");
        generated = Counter.builder("cmoe.generated.tokens").description("tokens generated").register(registry);
        deviceExperts = MultiGauge.builder("cmoe.device.experts").description("routed experts a device hosts")
                .register(registry);
        Gauge.builder("cmoe.cluster.unplaced.experts", unplaced, AtomicLong::get)
                .description("routed experts without a live host").register(registry);
    }

    /** Metrics that go nowhere, for tests. */
    public static ServerMetrics discarding() {
        return new ServerMetrics(new SimpleMeterRegistry());
    }

    private Timer latency(String name, String description) {
        return Timer.builder(name).description(description).publishPercentileHistogram()
                .minimumExpectedValue(Duration.ofMillis(1)).maximumExpectedValue(Duration.ofSeconds(60))
                .register(registry);
    }

    public MeterRegistry registry() {
        return registry;
    }

    /** A request ended with gRPC status {@code status} (OK, INVALID_ARGUMENT, ...). */
    public void requestFinished(String status) {
        registry.counter("cmoe.requests", "status", status).increment();
    }

    public void scheduler(int queuedNow, int runningNow, long kvBytesNow) {
        queued.set(queuedNow);
        running.set(runningNow);
        kvBytes.set(kvBytesNow);
    }

    public void step(int sequences, int tokens, int produced, long nanos) {
        batchSequences.record(sequences);
        batchTokens.record(tokens);
        stepTime.record(nanos, TimeUnit.NANOSECONDS);
        generated.increment(produced);
        if (nanos > 0) {
            tokensPerSecond.set(Math.round(produced * 1e9 / nanos));
        }
    }

    public void timeToFirstToken(long nanos) {
        ttft.record(nanos, TimeUnit.NANOSECONDS);
    }

    public void interTokenLatency(long nanos) {
        interToken.record(nanos, TimeUnit.NANOSECONDS);
    }

    public void queueTime(long nanos) {
        queueTime.record(nanos, TimeUnit.NANOSECONDS);
    }

    /** The counter of tokens routed to routed expert {@code expert} of MoE layer {@code layer}. */
    public Counter expertTokens(int layer, int expert) {
        return Counter.builder("cmoe.expert.tokens").description("tokens routed to an expert")
                .tag("layer", String.valueOf(layer)).tag("expert", String.valueOf(expert)).register(registry);
    }

    /**
     * The counter of token rows that MoE layer {@code layer} sent to device {@code device}
     * ({@code WORKER/DEVICE}) for routed experts: the per-device load that placement balances and
     * the bench reads. Per layer, because layers run one after the other: a step waits for each
     * layer's busiest device, so a balance summed over layers can hide a slow step.
     */
    public Counter deviceTokens(int layer, String device) {
        return Counter.builder("cmoe.device.tokens").description("token rows sent to a device's routed experts")
                .tag("layer", String.valueOf(layer)).tag("device", device).register(registry);
    }

    /** Replaces the per-device count of hosted routed experts (device id -> experts). */
    public void deviceExperts(java.util.Map<String, Integer> hosted) {
        deviceExperts.register(hosted.entrySet().stream()
                .map(e -> MultiGauge.Row.of(Tags.of("device", e.getKey()), e.getValue())).toList(), true);
    }

    /** Routed experts that have no live host now (0 when the cluster can serve every layer). */
    public void unplacedExperts(int n) {
        unplaced.set(n);
    }

    /** A rebalance was applied; {@code trigger} is rpc, imbalance or failover. */
    public void rebalanced(String trigger) {
        registry.counter("cmoe.cluster.rebalances", "trigger", trigger).increment();
    }

    /** KV cache bytes held by running sequences, as last reported by the scheduler. */
    public long kvBytesInUse() {
        return kvBytes.get();
    }
}
