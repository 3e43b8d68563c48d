package dev.cmoe.server.metrics;

import com.sun.net.httpserver.HttpServer;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;

/**
 * Serves {@code GET /metrics} in the Prometheus text format with the JDK's own HTTP server,
 * optionally behind the same bearer token as the gRPC and HTTP APIs: the metrics name every
 * device, expert and request rate of a deployment.
 */
public final class MetricsHttpServer implements AutoCloseable {
    private final HttpServer server;

    private MetricsHttpServer(HttpServer server) {
        this.server = server;
    }

    /** Starts serving {@code registry} on {@code host:port} (port 0 picks a free one), open to every caller. */
    public static MetricsHttpServer start(PrometheusMeterRegistry registry, String host, int port) throws IOException {
        return start(registry, host, port, null);
    }

    /**
     * As {@link #start(PrometheusMeterRegistry, String, int)}; with a {@code token}, a scrape
     * without {@code Authorization: Bearer TOKEN} gets 401 and no metrics.
     */
    public static MetricsHttpServer start(PrometheusMeterRegistry registry, String host, int port, String token)
            throws IOException {
        byte[] expected = token == null ? null : ("Bearer " + token).getBytes(StandardCharsets.UTF_8);
        HttpServer server = HttpServer.create(new InetSocketAddress(host, port), 0);
        server.createContext("/metrics", exchange -> {
            try (exchange) {
                if (!"GET".equals(exchange.getRequestMethod())) {
                    exchange.sendResponseHeaders(405, -1);
                    return;
                }
                if (expected != null) {
                    String given = exchange.getRequestHeaders().getFirst("Authorization");
                    // constant time: the comparison must not tell how much of a guess was right
                    if (given == null || !MessageDigest.isEqual(expected, given.getBytes(StandardCharsets.UTF_8))) {
                        exchange.getResponseHeaders().set("WWW-Authenticate", "Bearer");
                        exchange.sendResponseHeaders(401, -1);
                        return;
                    }
                }
                byte[] body = registry.scrape().getBytes(StandardCharsets.UTF_8);
                exchange.getResponseHeaders().set("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
                exchange.sendResponseHeaders(200, body.length);
                try (OutputStream out = exchange.getResponseBody()) {
                    out.write(body);
                }
            }
        });
        server.start();
        return new MetricsHttpServer(server);
    }

    public int port() {
        return server.getAddress().getPort();
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
