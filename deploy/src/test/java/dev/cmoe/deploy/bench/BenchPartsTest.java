package dev.cmoe.deploy.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.deploy.cli.BenchCommand;
import dev.cmoe.deploy.cli.DurationConverter;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** The load generator's parts on their own: lengths, arrivals, percentiles, metrics parsing, loads. */
class BenchPartsTest {

    @Test
    void lengthDistributionsParseSampleInRangeAndNameBadSpecs() {
        SplittableRandom r = new SplittableRandom(3);
        assertEquals(64, LengthDistribution.parse("64").sample(r));
        LengthDistribution u = LengthDistribution.parse("16-128");
        int min = Integer.MAX_VALUE;
        int max = 0;
        for (int i = 0; i < 5000; i++) {
            int v = u.sample(r);
            min = Math.min(min, v);
            max = Math.max(max, v);
        }
        assertEquals(16, min);
        assertEquals(128, max);
        LengthDistribution n = LengthDistribution.parse("normal:40:10");
        double sum = 0;
        for (int i = 0; i < 20_000; i++) {
            int v = n.sample(r);
            assertTrue(v >= 1 && v <= 80, "clipped: " + v);
            sum += v;
        }
        assertEquals(40, sum / 20_000, 0.5);
        for (String bad : List.of("0", "-3", "9-2", "normal:0:1", "abc", "normal:5")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LengthDistribution.parse(bad));
            assertTrue(e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
    }

    @Test
    void arrivalsKeepTheRateAndTheirBurstiness() {
        for (double cv : new double[] {1, 0.5, 3}) {
            Arrivals a = new Arrivals(50, cv);
            SplittableRandom r = new SplittableRandom(11);
            int n = 40_000;
            double sum = 0;
            double sq = 0;
            for (int i = 0; i < n; i++) {
                double g = a.nextGapNanos(r) / 1e9;
                sum += g;
                sq += g * g;
            }
            double mean = sum / n;
            double sd = Math.sqrt(sq / n - mean * mean);
            assertEquals(1 / 50.0, mean, 0.02 / 50 * 3, "mean gap at cv " + cv);
            assertEquals(cv, sd / mean, 0.06 * cv, "cv of the gaps");
        }
        assertThrows(IllegalArgumentException.class, () -> new Arrivals(0, 1));
        assertThrows(IllegalArgumentException.class, () -> new Arrivals(5, 0));
    }

    @Test
    void latencyPercentilesAreExactToThreeDigits() {
        long[] nanos = new long[1000];
        for (int i = 0; i < nanos.length; i++) {
            nanos[i] = (i + 1) * 1_000_000L; // 1 .. 1000 ms
        }
        Latency l = Latency.ofNanos(nanos);
        assertEquals(1000, l.count());
        assertEquals(500.5, l.mean(), 0.5);
        assertEquals(500, l.p50(), 0.5);
        assertEquals(900, l.p90(), 0.9);
        assertEquals(990, l.p99(), 1);
        assertEquals(1000, l.max(), 1);
        assertEquals(0, Latency.ofNanos(new long[] {-1, -1}).count(), "negative means none");
    }

    @Test
    void prometheusTextIsReadWithLabelsEscapesAndSpecialValues() {
        List<PrometheusText.Sample> s = PrometheusText.parse("""
                # HELP cmoe_expert_tokens_total tokens routed to an expert
                # TYPE cmoe_expert_tokens_total counter
                cmoe_expert_tokens_total{expert="3",layer="1",device="gpu:0"} 42.0
                cmoe_queue_depth 2.0
                cmoe_odd{name="a \\"quoted\\", b"} +Inf
                other_metric 1.0
                """, "cmoe_");
        assertEquals(3, s.size());
        assertEquals(Map.of("expert", "3", "layer", "1", "device", "gpu:0"), s.get(0).labels());
        assertEquals(42.0, s.get(0).value());
        assertEquals("cmoe_queue_depth", s.get(1).name());
        assertEquals("a \"quoted\", b", s.get(2).label("name"));
        assertEquals(Double.POSITIVE_INFINITY, s.get(2).value());
    }

    @Test
    void expertLoadIsTheDifferenceOfTwoScrapesPerLayerAndPerDevice() {
        MetricsScraper.Scrape a = scrape(0, """
                cmoe_expert_tokens_total{expert="0",layer="0",device="w1"} 10
                cmoe_expert_tokens_total{expert="1",layer="0",device="w2"} 10
                cmoe_expert_tokens_total{expert="2",layer="0",device="w2"} 10
                """);
        MetricsScraper.Scrape b = scrape(1_000_000_000L, """
                cmoe_expert_tokens_total{expert="0",layer="0",device="w1"} 70
                cmoe_expert_tokens_total{expert="1",layer="0",device="w2"} 20
                cmoe_expert_tokens_total{expert="2",layer="0",device="w2"} 10
                """);
        ExpertLoad l = ExpertLoad.between(a, b);
        assertEquals(List.of(60L, 10L, 0L), java.util.Arrays.stream(l.perLayer().get(0)).boxed().toList());
        assertEquals(60 / (70 / 3.0), l.imbalance(0), 1e-9);
        assertEquals(Map.of("w1", 60L, "w2", 10L), l.perDevice());
        assertEquals(60 / 35.0, l.deviceImbalance(), 1e-9);
        assertEquals(60 / 70.0, l.topShare(1), 1e-9);
        assertEquals(1, ExpertLoad.timeline(List.of(a, b)).size());
        assertTrue(ExpertLoad.between(a, a).isEmpty());
    }

    @Test
    void aClusterHeadsDeviceCounterIsThePerDeviceFigureOverallAndPerLayer() {
        MetricsScraper.Scrape a = scrape(0, """
                cmoe_expert_tokens_total{expert="0",layer="0"} 10
                cmoe_device_tokens_total{device="w1/cpu",layer="0"} 4
                cmoe_device_tokens_total{device="w2/cpu",layer="0"} 6
                """);
        MetricsScraper.Scrape b = scrape(1_000_000_000L, """
                cmoe_expert_tokens_total{expert="0",layer="0"} 40
                cmoe_device_tokens_total{device="w1/cpu",layer="0"} 14
                cmoe_device_tokens_total{device="w2/cpu",layer="0"} 16
                cmoe_device_tokens_total{device="w1/cpu",layer="1"} 10
                """);
        ExpertLoad l = ExpertLoad.between(a, b);
        assertEquals(Map.of("w1/cpu", 20L, "w2/cpu", 10L), l.perDevice());
        assertEquals(20 / 15.0, l.deviceImbalance(), 1e-9);
        // layer 0 even (10 and 10); layer 1 all on w1, and w2's missing counter counts as 0
        assertEquals(Map.of(0, Map.of("w1/cpu", 10L, "w2/cpu", 10L), 1, Map.of("w1/cpu", 10L, "w2/cpu", 0L)),
                l.perLayerDevice());
        assertEquals(List.of(1.0, 2.0), l.layerDeviceImbalances());
        assertEquals(1.5, l.layerDeviceImbalance(), 1e-9);
    }

    @Test
    void nativeMemoryIsTheResidentSetLessTheJvmsCommittedPools() {
        MetricsScraper.Scrape s = scrape(0, """
                process_resident_memory_bytes 1000
                jvm_memory_committed_bytes{area="heap",id="G1 Eden Space"} 300
                jvm_memory_committed_bytes{area="nonheap",id="Metaspace"} 100
                jvm_memory_used_bytes{area="heap",id="G1 Eden Space"} 120
                """);
        assertEquals(600, ServerView.nativeBytes(s), 1e-9);
        assertEquals(120, ServerView.heap(s), 1e-9);
        // without the JVM's pools there is no native figure, rather than a wrong one
        assertTrue(Double.isNaN(ServerView.nativeBytes(scrape(0, "process_resident_memory_bytes 1000\n"))));
    }

    @Test
    void loadSummaryCountsStatusesAndTokenTimings() {
        List<RequestResult> results = List.of(
                new RequestResult(0, "p", 0, 100_000_000, new long[] {10_000_000, 20_000_000, 40_000_000}, new int[] {4, 5, 6}, 5, "OK",
                        "LENGTH", false, ""),
                new RequestResult(1, "p", 50_000_000, 52_000_000, new long[0], new int[0], 0, "RESOURCE_EXHAUSTED", "",
                        false,
                        "queue is full"),
                new RequestResult(2, "p", 0, 30_000_000, new long[] {25_000_000}, new int[] {9}, 5, "CANCELLED", "",
                        true, ""));
        LoadSummary s = LoadSummary.of("x", results);
        assertEquals(3, s.issued());
        assertEquals(1, s.ok());
        assertEquals(Map.of("OK", 1, "RESOURCE_EXHAUSTED", 1, "CANCELLED", 1), s.statuses());
        assertEquals(0.1, s.seconds(), 1e-9);
        assertEquals(10, s.requestsPerSecond(), 1e-9);
        assertEquals(30, s.outputTokensPerSecond(), 1e-9);
        assertEquals(2, s.ttft().count(), "TTFT of every call with a token");
        assertEquals(15, s.tpot().p50(), 0.05, "(40 - 10) / 2 ms");
        assertEquals(2, s.itl().count());
        assertEquals(2, s.rejection().p50(), 0.01);
        assertEquals("CANCELLED 1, RESOURCE_EXHAUSTED 1", s.errors());
    }

    @Test
    void badFlagsAreNamed() {
        DurationConverter d = new DurationConverter();
        assertEquals(Duration.ofMillis(500), d.convert("500ms"));
        assertEquals(Duration.ofMinutes(5), d.convert("5m"));
        assertEquals(Duration.ofSeconds(30), d.convert("PT30S"));
        assertThrows(CommandLine.TypeConversionException.class, () -> d.convert("5 minutes"));
        for (String[] args : List.of(new String[] {"--scenario", "melt"}, new String[] {"--rate", "2", "--concurrency",
                "4"}, new String[] {"--scenario", "worker-loss"}, new String[] {"--scenario", "skew", "--concurrency",
                "1,2"}, new String[] {"--warmup", "-1"})) {
            BenchCommand b = new BenchCommand();
            new CommandLine(b).parseArgs(args);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> b.run(new java.io.PrintStream(java.io.OutputStream.nullOutputStream())));
            assertTrue(e.getMessage().contains("--"), e.getMessage());
        }
    }

    private static MetricsScraper.Scrape scrape(long t, String text) {
        return new MetricsScraper.Scrape(t, PrometheusText.parse(text));
    }
}
