package dev.cmoe.deploy.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** {@code cmoe bench --api http}: the same load through the OpenAI-compatible HTTP API, measured like gRPC. */
@Timeout(180)
class BenchHttpTest {

    @Test
    void theHttpLoadCountsTheSameTokensAndTimesThemLikeGrpc(@TempDir Path tmp) throws Exception {
        String[] load = {"--model", BenchFixture.dense().toString(), "--concurrency", "3", "--requests", "12",
                "--input-len", "8-16", "--output-len", "10", "--seed", "3"};
        LoadSummary grpc = BenchFixture.bench(tmp.resolve("grpc"), load).report().loads().getFirst();
        assertEquals(12, grpc.ok(), grpc.errors());
        String[] http = new String[load.length + 2];
        System.arraycopy(load, 0, http, 0, load.length);
        http[load.length] = "--api";
        http[load.length + 1] = "http";
        BenchFixture.Run run = BenchFixture.bench(tmp.resolve("http"), http);
        LoadSummary h = run.report().loads().getFirst();
        assertEquals(12, h.ok(), h.errors());
        assertEquals(grpc.outputTokens(), h.outputTokens(), "EOS ignored: 12 × 10 tokens either way");
        assertEquals(120, h.outputTokens());
        assertEquals(grpc.promptTokens(), h.promptTokens(), "the usage event reports the prompt lengths");
        assertEquals(12, h.ttft().count(), "every call has a first token");
        assertTrue(h.ttft().p50() > 0 && h.tpot().p50() > 0, h.ttft() + " " + h.tpot());
        assertTrue(String.valueOf(run.report().setup().get("api")).contains("/v1/completions"),
                run.report().setup().toString());
    }

    @Test
    void workerLossNeedsGrpc(@TempDir Path tmp) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> BenchFixture.bench(tmp,
                "--target", "127.0.0.1:1", "--kill-pid", "1", "--scenario", "worker-loss", "--api", "http",
                "--http-target", "http://127.0.0.1:1/v1"));
        assertTrue(e.getMessage().contains("--api grpc"), e.getMessage());
    }
}
