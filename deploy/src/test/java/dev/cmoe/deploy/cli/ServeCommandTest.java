package dev.cmoe.deploy.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.deploy.bench.BenchFixture;
import dev.cmoe.experts.placement.DefaultPlacement;
import dev.cmoe.experts.placement.LoadAwarePlacement;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** `cmoe serve` on a loopback ephemeral port over Netty, driven by `cmoe client`, with metrics and a bearer token. */
@Timeout(120)
class ServeCommandTest {

    @Test
    void clientStreamsFromServeAndMetricsCountTheRequest(@TempDir Path tmp) throws Exception {
        Path model = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), tmp.resolve("tiny"), DType.F32);
        Path token = Files.writeString(tmp.resolve("token"), "let-me-in\n");
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--model", model.toString(), "--port", "0", "--metrics-port", "0",
                "--auth-token-file", token.toString(), "--max-batch-tokens", "32");
        try (ServeCommand.Running running = serve.start()) {
            String server = "127.0.0.1:" + running.port();
            CliRun client = CliRun.of("client", "--server", server, "--auth-token-file", token.toString(),
                    "--max-new-tokens", "6", "--ignore-eos", "The jury");
            String usage = client.err();
            assertEquals(0, client.exit(), usage);
            assertTrue(usage.contains("6 generated, finish LENGTH"), usage);

            HttpResponse<String> metrics = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + running.metrics().port() + "/metrics"))
                    .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, metrics.statusCode());
            assertTrue(metrics.body().contains("cmoe_requests_total{status=\"OK\"} 1.0"), metrics.body());
            assertTrue(metrics.body().contains("cmoe_time_to_first_token_seconds_bucket"), "TTFT histogram");
            assertTrue(metrics.body().contains("cmoe_generated_tokens_total 6.0"), "token counter");

            // Without the token the server refuses.
            CliRun refused = CliRun.of("client", "--server", server, "--max-new-tokens", "2", "The jury");
            assertEquals(2, refused.exit());
            assertTrue(refused.err().contains("UNAUTHENTICATED"), refused.err());
        }
    }

    @Test
    void aSingleNodePutsTheRoutedExpertsOnTheOneDeviceItIsGiven() throws Exception {
        Path dense = BenchFixture.dense();
        Path carved = BenchFixture.carved();
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--model", carved.toString(), "--port", "0", "--devices", "cpu",
                "--max-batch-tokens", "32");
        try (ServeCommand.Running running = serve.start()) {
            CliRun client = CliRun.of("client", "--server", "127.0.0.1:" + running.port(), "--max-new-tokens", "4",
                    "--ignore-eos", "The jury");
            assertEquals(0, client.exit(), client.err());
            assertTrue(client.err().contains("4 generated"), client.err());
        }
        String[][] refused = {
            {"--model", carved.toString(), "--devices", "cpu", "--memory-per-device", "1000"},
            {"--model", dense.toString(), "--devices", "cpu"},
            {"--model", carved.toString(), "--devices", "cuda:0"},
            {"--model", carved.toString(), "--devices", "cpu,cpu"},
        };
        String[] why = {"exceeds its memory budget of 1000 bytes", "is dense", "asks for gpu:0 but the engine", "lists cpu twice"};
        for (int i = 0; i < refused.length; i++) {
            ServeCommand bad = new ServeCommand();
            new CommandLine(bad).parseArgs(refused[i]);
            RuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(
                    RuntimeException.class, bad::start, String.join(" ", refused[i]));
            assertTrue(e.getMessage().contains(why[i]), e.getMessage());
        }
    }

    @Test
    void clusterFlagsAreCheckedBeforeAnythingStarts(@TempDir Path tmp) {
        String[][] cases = {
            {"--plan", "plan.json"},
            {"--cluster-seed", "127.0.0.1:2551"},
            {"--role", "worker", "--cluster-seed", "127.0.0.1:2551"},
            {"--role", "head"},
            {"--spare-slots", "4"},
            {"--role", "head", "--cluster-seed", "127.0.0.1:2551", "--spare-slots", "-1"},
            {"--cluster-secret-file", "secret"},
            {"--role", "head", "--cluster-seed", "127.0.0.1:2551", "--cluster-key-store", "node.p12"},
            {"--role", "head", "--cluster-seed", "127.0.0.1:2551", "--cluster-secret-file", "absent-secret"},
        };
        String[] want = {"--plan needs --role head", "--cluster-seed needs --role head",
            "--role worker is not a serve role", "--role head needs --cluster-seed", "--spare-slots needs --role head",
            "--spare-slots must be ≥ 0, got -1", "--cluster-key-store/--cluster-trust-store/--cluster-secret-file needs"
            + " --role head", "--cluster-key-store-password-file is required", "cannot read the cluster secret file"
            + " absent-secret"};
        for (int i = 0; i < cases.length; i++) {
            ServeCommand serve = new ServeCommand();
            List<String> args = new java.util.ArrayList<>(List.of("--model", tmp.toString()));
            args.addAll(List.of(cases[i]));
            new CommandLine(serve).parseArgs(args.toArray(String[]::new));
            IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    serve::start);
            assertTrue(e.getMessage().contains(want[i]), e.getMessage());
        }
        // the head's rebalancing policy: moves by default and with --spare-slots 0, EPLB with spares
        String[] head = {"--model", tmp.toString(), "--role", "head", "--cluster-seed", "127.0.0.1:2551"};
        for (String[] extra : new String[][] {{}, {"--spare-slots", "0"}, {"--spare-slots", "6"}}) {
            ServeCommand serve = new ServeCommand();
            new CommandLine(serve).parseArgs(java.util.stream.Stream.concat(java.util.Arrays.stream(head),
                    java.util.Arrays.stream(extra)).toArray(String[]::new));
            var policy = serve.placementPolicy();
            if (extra.length > 0 && extra[1].equals("6")) {
                assertTrue(policy instanceof LoadAwarePlacement p && p.spareSlots() == 6, String.valueOf(policy));
            } else {
                assertTrue(policy instanceof DefaultPlacement, String.valueOf(policy));
            }
        }
        // a worker needs a carved model; a dense one is refused naming why
        Path dense;
        try {
            dense = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), tmp.resolve("dense"), DType.F32);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        CliRun worker = CliRun.of("worker", "--cluster-seed", "127.0.0.1:1", "--name", "w1", "--devices", "cpu",
                "--model", dense.toString());
        assertEquals(2, worker.exit());
        assertTrue(worker.err().contains("is dense"), worker.err());
        // the shared cluster flags keep the worker's requirements, naming the flag
        CliRun missing = CliRun.of("worker", "--cluster-seed", "127.0.0.1:1", "--devices", "cpu", "--model",
                tmp.toString());
        assertEquals(2, missing.exit());
        assertTrue(missing.err().contains("--name is required"), missing.err());
    }

    @Test
    void httpPortServesTheOpenAiApiThroughTheSameSchedulerAndToken(@TempDir Path tmp) throws Exception {
        Path model = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), tmp.resolve("tiny"), DType.F32);
        Path token = Files.writeString(tmp.resolve("token"), "let-me-in\n");
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--model", model.toString(), "--port", "0", "--metrics-port", "0",
                "--http-port", "0", "--auth-token-file", token.toString());
        try (ServeCommand.Running running = serve.start()) {
            assertTrue(running.httpPort() > 0 && running.httpPort() != running.port());
            HttpClient http = HttpClient.newHttpClient();
            String base = "http://127.0.0.1:" + running.httpPort();
            String body = "{\"model\": \"tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"The jury\"}],"
                    + " \"max_tokens\": 5, \"temperature\": 0, \"ignore_eos\": true}";
            HttpResponse<String> chat = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/chat/completions"))
                    .header("Authorization", "Bearer let-me-in").POST(HttpRequest.BodyPublishers.ofString(body))
                    .timeout(Duration.ofSeconds(30)).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, chat.statusCode(), chat.body());
            assertTrue(chat.body().contains("\"completion_tokens\":5"), chat.body());
            assertTrue(chat.body().contains("\"model\":\"tiny\""), "the directory's name is the model id: "
                    + chat.body());
            HttpResponse<String> refused = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/models"))
                    .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(401, refused.statusCode(), refused.body());
            HttpResponse<String> metrics = http.send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + running.metrics().port() + "/metrics"))
                    .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
            assertTrue(metrics.body().contains("cmoe_generated_tokens_total 5.0"), "the shared scheduler's metrics");
            assertTrue(metrics.body().contains("cmoe_requests_total{status=\"OK\"} 1.0"), metrics.body());
        }
        ServeCommand tls = new ServeCommand();
        new CommandLine(tls).parseArgs("--model", model.toString(), "--http-port", "0", "--tls-cert", "c.pem",
                "--tls-key", "k.pem");
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                tls::start);
        assertTrue(e.getMessage().contains("--http-port serves plain HTTP"), e.getMessage());
    }
}
