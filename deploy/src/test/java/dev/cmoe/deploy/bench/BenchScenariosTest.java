package dev.cmoe.deploy.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.sun.net.httpserver.HttpServer;
import dev.cmoe.deploy.cli.ServeCommand;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * The short CI versions of the stress scenarios, over real gRPC on loopback against in-process
 * servers of tiny models: each must PASS on the real server, and the checks must FAIL when the
 * server misbehaves (no back-pressure; metrics that show leaked sequences or no skew).
 */
@Timeout(120)
class BenchScenariosTest {

    @Test
    void saturateRefusesTheExcessQuicklyAndCompletesEveryAdmittedCall(@TempDir Path tmp) throws Exception {
        BenchFixture.Run run = BenchFixture.bench(tmp, "--model", BenchFixture.dense().toString(),
                "--scenario", "saturate", "--max-queue", "2", "--max-running", "2", "--requests", "80",
                "--duration", "20s", "--input-len", "8-24", "--output-len", "12");
        Verdict v = run.report().verdict();
        assertTrue(v.pass(), v.line());
        LoadSummary overload = run.report().loads().get(1);
        assertTrue(overload.count("RESOURCE_EXHAUSTED") > 0, overload.errors());
        assertEquals(overload.issued() - overload.count("RESOURCE_EXHAUSTED"), overload.ok(), overload.errors());
        assertTrue(run.printed().contains("VERDICT saturate PASS"), run.printed());
        JsonObject json = JsonParser.parseString(Files.readString(tmp.resolve("bench.json"))).getAsJsonObject();
        assertTrue(json.getAsJsonObject("verdict").get("pass").getAsBoolean());
        assertTrue(Files.size(tmp.resolve("latency.png")) > 1000, "latency chart");
        assertTrue(Files.size(tmp.resolve("memory-over-time.png")) > 1000, "memory chart");
        assertTrue(json.getAsJsonObject("server").getAsJsonArray("memory_over_time").size() >= 2);
        ServerView.Memory last = run.report().server().memory().getLast();
        assertTrue(last.nativeBytes() > 0 && last.nativeBytes() < last.rssBytes(), "native memory read: " + last);
    }

    @Test
    void warmUpRequestsRunFirstAndStayOutOfTheTable(@TempDir Path tmp) throws Exception {
        BenchFixture.Run run = BenchFixture.bench(tmp, "--model", BenchFixture.dense().toString(),
                "--warmup", "3", "--requests", "4", "--concurrency", "2", "--input-len", "8", "--output-len", "6");
        assertEquals(1, run.report().loads().size(), run.printed());
        LoadSummary load = run.report().loads().getFirst();
        assertEquals(4, load.issued(), run.printed());
        assertEquals(4 * 6, load.outputTokens(), run.printed());
        // the server saw the warm-up too: 3 + 4 calls
        assertEquals(7L, run.report().server().requestsByStatus().get("OK"), run.printed());
    }

    @Test
    void saturateFailsWhenTheServerQueuesWithoutBound(@TempDir Path tmp) throws Exception {
        // A queue far larger than the load: nothing is refused, the back-pressure check must fail.
        BenchFixture.Run run = BenchFixture.bench(tmp, "--model", BenchFixture.dense().toString(),
                "--scenario", "saturate", "--max-queue", "100000", "--max-running", "2", "--requests", "30",
                "--duration", "20s", "--input-len", "8-24", "--output-len", "12");
        Verdict v = run.report().verdict();
        assertFalse(v.pass(), v.line());
        assertTrue(v.line().contains("FAILED 0 of 30 calls"), v.line());
    }

    @Test
    void cancelStormLeavesNoSequenceAndNoCache(@TempDir Path tmp) throws Exception {
        BenchFixture.Run run = BenchFixture.bench(tmp, "--model", BenchFixture.dense().toString(),
                "--scenario", "cancel-storm", "--concurrency", "8", "--requests", "32", "--input-len", "8-24",
                "--output-len", "24");
        Verdict v = run.report().verdict();
        assertTrue(v.pass(), v.line());
        long cancelled = ((Number) v.figures().get("cancelled")).longValue();
        assertTrue(cancelled >= 8 && cancelled <= 24, "about half of 32 cancelled: " + cancelled);
        assertEquals(0, run.report().server().finalKvBytes());
        assertEquals(0, run.report().server().finalRunning());
    }

    @Test
    void cancelStormFailsWhenTheServerReportsLeftoverSequences(@TempDir Path tmp) throws Exception {
        // The real server serves; its metrics are replaced by an endpoint that reports a
        // sequence and KV bytes that never go away: exactly what a leak looks like.
        try (ServeCommand.Running server = serve(BenchFixture.dense());
             FakeMetrics leaky = new FakeMetrics("""
                     # TYPE cmoe_running_sequences gauge
                     cmoe_running_sequences 1.0
                     cmoe_queue_depth 0.0
                     cmoe_kv_cache_bytes 4096.0
                     cmoe_requests_total{status="OK"} 0.0
                     """)) {
            BenchFixture.Run run = BenchFixture.bench(tmp, "--target", "127.0.0.1:" + server.port(),
                    "--model", BenchFixture.dense().toString(), "--metrics", "127.0.0.1:" + leaky.port(),
                    "--scenario", "cancel-storm", "--concurrency", "4", "--requests", "8", "--input-len", "8",
                    "--output-len", "16", "--drain-timeout", "500ms");
            Verdict v = run.report().verdict();
            assertFalse(v.pass(), v.line());
            assertTrue(v.line().contains("FAILED no leaked sequences: running 1"), v.line());
            assertTrue(v.line().contains("FAILED no leaked KV cache: 4096 bytes"), v.line());
        }
    }

    @Test
    void skewShowsInThePerExpertCounts(@TempDir Path tmp) throws Exception {
        BenchFixture.Run run = BenchFixture.bench(tmp, "--model", BenchFixture.carved().toString(),
                "--scenario", "skew", "--concurrency", "4", "--requests", "12", "--input-len", "24-32",
                "--output-len", "4");
        Verdict v = run.report().verdict();
        assertTrue(v.pass(), v.line());
        ExpertLoad total = run.report().server().expertLoad();
        assertEquals(2, total.perLayer().size(), "both layers counted");
        assertEquals(7, total.perLayer().get(0).length, "S1A2E8: 7 routed experts");
        assertTrue(Files.size(tmp.resolve("expert-imbalance-over-time.png")) > 1000);
        assertTrue(Files.size(tmp.resolve("device-load-over-time.png")) > 1000);
    }

    @Test
    void skewFailsWhenTheCountsShowNoSkew(@TempDir Path tmp) throws Exception {
        // Counters that grow evenly over all experts whatever the prompts: the skew cannot be seen.
        AtomicInteger scrapes = new AtomicInteger();
        try (ServeCommand.Running server = serve(BenchFixture.carved());
             FakeMetrics even = new FakeMetrics(() -> {
                 int n = scrapes.incrementAndGet();
                 StringBuilder b = new StringBuilder();
                 for (int j = 0; j < 7; j++) {
                     b.append("cmoe_expert_tokens_total{expert=\"").append(j).append("\",layer=\"0\"} ")
                             .append(10.0 * n).append('\n');
                 }
                 return b.toString();
             })) {
            BenchFixture.Run run = BenchFixture.bench(tmp, "--target", "127.0.0.1:" + server.port(),
                    "--model", BenchFixture.carved().toString(), "--metrics", "127.0.0.1:" + even.port(),
                    "--scenario", "skew", "--concurrency", "2", "--requests", "4", "--input-len", "16",
                    "--output-len", "2");
            Verdict v = run.report().verdict();
            assertFalse(v.pass(), v.line());
            assertTrue(v.line().contains("FAILED skew visible: max/mean tokens per expert 1.00 skewed > 1.00 uniform"),
                    v.line());
        }
    }

    @Test
    void workerLossKillsTheGivenProcessAndChecksEveryCallEnds(@TempDir Path tmp) throws Exception {
        // No cluster here: the "worker" is a plain process, so the kill must not disturb the load,
        // and every call must complete. With a cluster (#7) the same logic checks UNAVAILABLE/recovery.
        Process victim = new ProcessBuilder("sleep", "60").start();
        try (ServeCommand.Running server = serve(BenchFixture.dense())) {
            BenchFixture.Run run = BenchFixture.bench(tmp, "--target", "127.0.0.1:" + server.port(),
                    "--model", BenchFixture.dense().toString(), "--scenario", "worker-loss",
                    "--kill-pid", Long.toString(victim.pid()), "--kill-after", "300ms", "--duration", "1500ms",
                    "--concurrency", "2", "--input-len", "8", "--output-len", "8");
            Verdict v = run.report().verdict();
            assertTrue(v.pass(), v.line());
            assertTrue(victim.waitFor(5, TimeUnit.SECONDS), "the victim was killed");
            assertTrue(v.line().contains("process " + victim.pid() + " killed at"), v.line());
            assertTrue(run.report().loads().getLast().ok() > 0, "calls went on after the kill");
            assertTrue(v.line().contains("same tokens as without the kill: 0 of"), v.line());
        } finally {
            victim.destroyForcibly();
        }
    }

    private static ServeCommand.Running serve(Path model) throws Exception {
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--model", model.toString(), "--port", "0", "--max-batch-tokens", "64");
        return serve.start();
    }

    /** A metrics endpoint on loopback that always answers {@code body}. */
    private static final class FakeMetrics implements AutoCloseable {
        private final HttpServer http;

        FakeMetrics(String body) throws java.io.IOException {
            this(() -> body);
        }

        FakeMetrics(Supplier<String> body) throws java.io.IOException {
            http = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
            http.createContext("/metrics", exchange -> {
                byte[] bytes = body.get().getBytes(StandardCharsets.UTF_8);
                exchange.sendResponseHeaders(200, bytes.length);
                try (var out = exchange.getResponseBody()) {
                    out.write(bytes);
                }
            });
            http.start();
        }

        int port() {
            return http.getAddress().getPort();
        }

        @Override
        public void close() {
            http.stop(0);
        }
    }
}
