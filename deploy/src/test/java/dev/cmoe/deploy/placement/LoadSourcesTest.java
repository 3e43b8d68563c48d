package dev.cmoe.deploy.placement;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.experts.placement.Bytes;
import dev.cmoe.experts.placement.ExpertLoads;
import dev.cmoe.server.metrics.MetricsHttpServer;
import dev.cmoe.server.metrics.ServerMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Expert loads from the serving metrics (text, file, live endpoint) and the errors bad sources get. */
@Timeout(60)
class LoadSourcesTest {

    /** The counters a server of 2 layers × 4 experts would expose; expert 3 of layer 1 was never chosen. */
    private static PrometheusMeterRegistry servedRegistry() {
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        ServerMetrics metrics = new ServerMetrics(registry);
        double[][] counts = {{50, 30, 15, 5}, {60, 20, 20}};
        for (int l = 0; l < counts.length; l++) {
            for (int e = 0; e < counts[l].length; e++) {
                metrics.expertTokens(l, e).increment(counts[l][e]);
            }
        }
        return registry;
    }

    private static void assertShares(ExpertLoads loads) {
        assertEquals(2, loads.layers());
        assertEquals(4, loads.experts());
        assertEquals(0.5, loads.share(0, 0), 1e-12);
        assertEquals(0.05, loads.share(0, 3), 1e-12);
        assertEquals(0.6, loads.share(1, 0), 1e-12);
        assertEquals(0.0, loads.share(1, 3), 1e-12);
        assertEquals(100, loads.tokens(1), 1e-9);
    }

    @Test
    void readsTheServersCountersFromTextFileAndLiveEndpoint(@TempDir Path tmp) throws Exception {
        PrometheusMeterRegistry registry = servedRegistry();
        String text = registry.scrape();
        assertTrue(text.contains(PrometheusCounts.METRIC + "{"), text);
        assertShares(LoadSources.fromPrometheus(text, "scrape", 4));

        Path saved = Files.writeString(tmp.resolve("metrics.txt"), text);
        assertShares(LoadSources.resolve(saved.toString(), tmp, 2, 4));

        try (MetricsHttpServer http = MetricsHttpServer.start(registry, "127.0.0.1", 0)) {
            assertShares(LoadSources.resolve("http://127.0.0.1:" + http.port() + "/metrics", tmp, 2, 4));
        }
    }

    @Test
    void sumsFurtherLabelsAndSkipsOtherMetrics() {
        String text = """
                # HELP cmoe_expert_tokens_total tokens routed to an expert
                # TYPE cmoe_expert_tokens_total counter
                cmoe_expert_tokens_total{layer="0",expert="0",worker="w1"} 3.0
                cmoe_expert_tokens_total{expert="0", layer="0", worker="w2"} 4 1700000000000
                cmoe_expert_tokens_total{expert="1",layer="0"} 7.0
                cmoe_expert_tokens_created{expert="1",layer="0"} 1.7E9
                cmoe_generated_tokens_total 99.0
                """;
        double[][] counts = PrometheusCounts.expertTokens(text, "t");
        assertArrayEquals(new double[] {7, 7}, counts[0], 1e-12);
    }

    @Test
    void badSourcesAreNamed(@TempDir Path tmp) throws Exception {
        IllegalArgumentException none = assertThrows(IllegalArgumentException.class,
                () -> PrometheusCounts.expertTokens("cmoe_generated_tokens_total 3.0\n", "http://x/metrics"));
        assertTrue(none.getMessage().contains("http://x/metrics has no cmoe_expert_tokens_total samples"),
                none.getMessage());
        IllegalArgumentException label = assertThrows(IllegalArgumentException.class,
                () -> PrometheusCounts.expertTokens("cmoe_expert_tokens_total{layer=\"a\",expert=\"0\"} 1\n", "f"));
        assertTrue(label.getMessage().contains("f line 1: label layer=\"a\" is not an index"), label.getMessage());
        IllegalArgumentException negative = assertThrows(IllegalArgumentException.class,
                () -> PrometheusCounts.expertTokens("cmoe_expert_tokens_total{layer=\"0\",expert=\"0\"} -1\n", "f"));
        assertTrue(negative.getMessage().contains("not a finite count"), negative.getMessage());

        IllegalArgumentException shape = assertThrows(IllegalArgumentException.class,
                () -> LoadSources.fromPrometheus(servedRegistry().scrape(), "s", 4).requireShape(3, 4));
        assertTrue(shape.getMessage().contains("cover 2 layers × 4 routed experts, but the model has 3 × 4"),
                shape.getMessage());
        IllegalArgumentException noReport = assertThrows(IllegalArgumentException.class,
                () -> LoadSources.resolve(LoadSources.CARVE_REPORT, tmp, 2, 4));
        assertTrue(noReport.getMessage().contains("has no carve_report.json"), noReport.getMessage());
        IllegalArgumentException missing = assertThrows(IllegalArgumentException.class,
                () -> LoadSources.resolve(tmp.resolve("nope.txt").toString(), tmp, 2, 4));
        assertTrue(missing.getMessage().contains("no such file"), missing.getMessage());
        Path json = Files.writeString(tmp.resolve("other.json"), "{\"version\": 1}");
        IllegalArgumentException foreign = assertThrows(IllegalArgumentException.class,
                () -> LoadSources.resolve(json.toString(), tmp, 2, 4));
        assertTrue(foreign.getMessage().contains("is not a carve report"), foreign.getMessage());
        IllegalArgumentException refused = assertThrows(IllegalArgumentException.class,
                () -> LoadSources.resolve("http://127.0.0.1:1/metrics", tmp, 2, 4));
        assertTrue(refused.getMessage().contains("cannot scrape http://127.0.0.1:1/metrics"), refused.getMessage());

        double[][] idle = {{0, 0}, {1, 2}};
        IllegalArgumentException noTraffic = assertThrows(IllegalArgumentException.class,
                () -> ExpertLoads.ofCounts("s", idle));
        assertTrue(noTraffic.getMessage().contains("layer 0 has routed no tokens yet"), noTraffic.getMessage());
    }

    @Test
    void sizesAndDevicesAsOperatorsWriteThem() {
        assertEquals(1073741824L, Bytes.parse("1073741824"));
        assertEquals(512L << 20, Bytes.parse("512MiB"));
        assertEquals(16L << 30, Bytes.parse("16G"));
        assertEquals(3L << 29, Bytes.parse("1.5gb"));
        assertEquals("192.0 KiB", Bytes.format(196_608));
        assertThrows(IllegalArgumentException.class, () -> Bytes.parse("lots"));
        assertThrows(IllegalArgumentException.class, () -> Bytes.parse("1.5"));

        var devices = DeviceList.parse("w1/gpu:0, w1/gpu:1=2GiB,w2/cpu", 1 << 20);
        assertEquals(3, devices.size());
        assertEquals("w1/gpu:1", devices.get(1).id());
        assertEquals(2L << 30, devices.get(1).memoryBytes());
        assertEquals(1 << 20, devices.get(2).memoryBytes());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> DeviceList.parse("w1/cpu,w1/cpu", 0))
                .getMessage().contains("lists w1/cpu twice"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> DeviceList.parse("gpu:0", 0))
                .getMessage().contains("'gpu:0' is not WORKER/DEVICE"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> DeviceList.parse("a/cpu,", 0))
                .getMessage().contains("empty entry"));
    }
}
