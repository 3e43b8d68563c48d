package dev.cmoe.server.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/** The Prometheus endpoint: open by default, behind the bearer token when one is given. */
class MetricsHttpServerTest {

    private static HttpResponse<String> get(int port, String authorization) throws Exception {
        HttpRequest.Builder req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics"))
                .timeout(Duration.ofSeconds(10));
        if (authorization != null) {
            req.header("Authorization", authorization);
        }
        try (HttpClient client = HttpClient.newHttpClient()) {
            return client.send(req.build(), HttpResponse.BodyHandlers.ofString());
        }
    }

    @Test
    void aTokenProtectsTheScrape() throws Exception {
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        registry.counter("cmoe_test_scrapes").increment();
        try (MetricsHttpServer server = MetricsHttpServer.start(registry, "127.0.0.1", 0, "s3cret")) {
            assertEquals(401, get(server.port(), null).statusCode());
            assertEquals(401, get(server.port(), "Bearer s3cre").statusCode());
            assertEquals(401, get(server.port(), "s3cret").statusCode());
            HttpResponse<String> ok = get(server.port(), "Bearer s3cret");
            assertEquals(200, ok.statusCode());
            assertTrue(ok.body().contains("cmoe_test_scrapes"), ok.body());
        }
        try (MetricsHttpServer open = MetricsHttpServer.start(registry, "127.0.0.1", 0)) {
            assertEquals(200, get(open.port(), null).statusCode());
        }
    }
}
