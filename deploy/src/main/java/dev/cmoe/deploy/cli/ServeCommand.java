package dev.cmoe.deploy.cli;

import dev.cmoe.model.ModelDir;
import dev.cmoe.server.InferenceServer;
import dev.cmoe.server.metrics.MetricsHttpServer;
import dev.cmoe.server.metrics.ProcessMetrics;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.scheduler.SchedulerConfig;
import io.grpc.InsecureServerCredentials;
import io.grpc.ServerCredentials;
import io.grpc.TlsServerCredentials;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code cmoe serve}: serves a model over gRPC with continuous batching until interrupted. */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve a model over gRPC (cmoe.v1.Generation, health, reflection) until Ctrl-C.")
public final class ServeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Model directory.")
    Path model;

    @Option(names = "--host", defaultValue = "127.0.0.1",
            description = "Address to listen on (default: ${DEFAULT-VALUE}; 0.0.0.0 exposes the server).")
    String host;

    @Option(names = "--port", defaultValue = "50051", description = "gRPC port; 0 picks a free one (default: ${DEFAULT-VALUE}).")
    int port;

    @Option(names = "--max-batch-tokens", defaultValue = "512", description = "Tokens per step (default: ${DEFAULT-VALUE}).")
    int maxBatchTokens;

    @Option(names = "--max-queue", defaultValue = "256",
            description = "Requests waiting for admission before RESOURCE_EXHAUSTED (default: ${DEFAULT-VALUE}).")
    int maxQueue;

    @Option(names = "--max-running", defaultValue = "64", description = "Sequences in the batch at once (default: ${DEFAULT-VALUE}).")
    int maxRunning;

    @Option(names = "--max-kv-bytes", defaultValue = "0", description = "KV cache budget in bytes; 0 = unlimited.")
    long maxKvBytes;

    @Option(names = "--metrics-port", defaultValue = "-1",
            description = "Serve Prometheus metrics at http://HOST:PORT/metrics; -1 = off (default).")
    int metricsPort;

    @Option(names = "--tls-cert", description = "PEM certificate chain; with --tls-key, serve TLS only.")
    Path tlsCert;

    @Option(names = "--tls-key", description = "PEM private key (PKCS#8) of --tls-cert.")
    Path tlsKey;

    @Option(names = "--auth-token-file", description = "File holding a bearer token required on every call.")
    Path authTokenFile;

    /** A started server with its model and metrics endpoint; closing stops all three. */
    public record Running(ModelDir dir, InferenceServer server, MetricsHttpServer metrics) implements AutoCloseable {
        public int port() {
            return server.port();
        }

        @Override
        public void close() throws InterruptedException {
            try {
                server.close();
            } finally {
                if (metrics != null) {
                    metrics.close();
                }
                dir.close();
            }
        }
    }

    @Override
    public Integer call() throws Exception {
        CountDownLatch stopped = new CountDownLatch(1);
        Running running = start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                running.close();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                stopped.countDown();
            }
        }, "cmoe-serve-shutdown"));
        System.err.printf("cmoe serve: %s on %s:%d (%s%s)%s%n", running.dir().config().modelType(), host,
                running.port(), tlsCert != null ? "TLS" : "plaintext",
                authTokenFile != null ? ", bearer token required" : "",
                running.metrics() != null ? "; metrics on http://" + host + ":" + running.metrics().port() + "/metrics"
                        : "");
        stopped.await();
        return 0;
    }

    /** Opens the model and starts serving it; the caller closes what it gets. */
    public Running start() throws IOException {
        if ((tlsCert == null) != (tlsKey == null)) {
            throw new IllegalArgumentException("--tls-cert and --tls-key go together; got only "
                    + (tlsCert != null ? "--tls-cert" : "--tls-key"));
        }
        String token = authTokenFile == null ? null : readToken(authTokenFile);
        ServerCredentials credentials = tlsCert != null
                ? TlsServerCredentials.create(tlsCert.toFile(), tlsKey.toFile())
                : InsecureServerCredentials.create();
        SchedulerConfig config = new SchedulerConfig(maxBatchTokens, maxQueue, Math.min(maxRunning, maxBatchTokens),
                maxKvBytes, SchedulerConfig.defaults().streamWindow());
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        ProcessMetrics.bindTo(registry);
        ModelDir dir = ModelDir.open(model);
        InferenceServer server = null;
        try {
            // a carved model (cmoe block) is served through expert and router actors
            server = InferenceServer.start(dir, config,
                    NettyServerBuilder.forAddress(new InetSocketAddress(host, port), credentials),
                    new ServerMetrics(registry), token);
            MetricsHttpServer metrics = metricsPort >= 0 ? MetricsHttpServer.start(registry, host, metricsPort) : null;
            return new Running(dir, server, metrics);
        } catch (IOException | RuntimeException e) {
            try {
                if (server != null) {
                    server.close();
                }
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
            }
            dir.close();
            throw e;
        }
    }

    private static String readToken(Path file) throws IOException {
        String token = Files.readString(file, StandardCharsets.UTF_8).strip();
        if (token.isEmpty()) {
            throw new IllegalArgumentException("--auth-token-file " + file + " is empty");
        }
        return token;
    }
}
