package dev.cmoe.deploy.cli;

import com.google.gson.JsonParser;
import dev.cmoe.deploy.bench.GrpcTransport;
import dev.cmoe.deploy.bench.HttpTransport;
import dev.cmoe.deploy.bench.Transport;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.proto.v1.GetModelInfoRequest;
import dev.cmoe.proto.v1.ModelInfo;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * The server a bench run measures and how it reaches it: an in-process server it starts (for
 * {@code --model}) or a running one ({@code --target}), the gRPC channel (model info, Admin), the
 * metrics endpoint, and the {@link Transport} the load goes through (gRPC, or the HTTP API with
 * {@code --api http}). Closing it stops what it started.
 */
final class BenchTarget implements AutoCloseable {
    final String address;
    final String metricsSpec;
    final TextTokenizer tokenizer; // null: prompts are cut by words
    final ModelConfig config;      // null for a remote server
    final ServeCommand.Running local;
    final ManagedChannel channel;
    final Transport transport;
    final ModelInfo info;
    final String token;            // the bearer token calls and metric scrapes send, or null

    private BenchTarget(String address, String metricsSpec, TextTokenizer tokenizer, ModelConfig config,
                        ServeCommand.Running local, ManagedChannel channel, Transport transport, ModelInfo info,
                        String token) {
        this.address = address;
        this.token = token;
        this.metricsSpec = metricsSpec;
        this.tokenizer = tokenizer;
        this.config = config;
        this.local = local;
        this.channel = channel;
        this.transport = transport;
        this.info = info;
    }

    /** Which API the load goes through. */
    enum Api {
        GRPC, HTTP;

        static Api of(String name) {
            return switch (name) {
                case "grpc" -> GRPC;
                case "http" -> HTTP;
                default -> throw new IllegalArgumentException("--api must be grpc or http, got '" + name + "'");
            };
        }
    }

    /**
     * Starts or reaches the server.
     *
     * @param serve the in-process server's command (its flags set), used when {@code target} is null
     * @param httpTarget with a remote target and {@link Api#HTTP}: the API root (http://HOST:PORT/v1)
     * @param model with a remote target: a model directory whose tokenizer cuts the prompts, or null
     */
    static BenchTarget open(ServeCommand serve, String target, String metrics, String httpTarget, Path model,
                            Api api, String token) throws IOException {
        ServeCommand.Running local = null;
        ManagedChannel channel = null;
        Transport transport = null;
        try {
            String address;
            String metricsSpec;
            TextTokenizer tokenizer = null;
            ModelConfig config = null;
            String httpRoot = httpTarget;
            if (target == null) {
                local = serve.start();
                address = "127.0.0.1:" + local.port();
                metricsSpec = "127.0.0.1:" + local.metrics().port();
                tokenizer = local.dir().tokenizer();
                config = local.dir().config();
                if (api == Api.HTTP) {
                    httpRoot = "http://127.0.0.1:" + local.httpPort() + "/v1";
                }
            } else {
                address = target;
                metricsSpec = metrics;
                if (model != null) {
                    tokenizer = TextTokenizer.load(model);
                }
            }
            channel = Grpc.newChannelBuilder(address, InsecureChannelCredentials.create()).build();
            if (token != null) {
                channel = new BearerChannel(channel, bearer(token));
            }
            ModelInfo info = GenerationGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
                    .getModelInfo(GetModelInfoRequest.getDefaultInstance());
            transport = api == Api.HTTP ? new HttpTransport(httpRoot, servedModel(httpRoot, token), token)
                    : new GrpcTransport(channel);
            return new BenchTarget(address, metricsSpec, tokenizer, config, local, channel, transport, info, token);
        } catch (IOException | RuntimeException e) {
            if (transport instanceof HttpTransport h) {
                h.close();
            }
            if (channel != null) {
                channel.shutdownNow();
            }
            if (local != null) {
                try {
                    local.close();
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                }
            }
            throw e;
        }
    }

    private static io.grpc.Metadata bearer(String token) {
        io.grpc.Metadata headers = new io.grpc.Metadata();
        headers.put(io.grpc.Metadata.Key.of("authorization", io.grpc.Metadata.ASCII_STRING_MARSHALLER),
                "Bearer " + token);
        return headers;
    }

    /** The model id the HTTP API serves: the first of its /v1/models. */
    private static String servedModel(String root, String token) throws IOException {
        HttpRequest.Builder req = HttpRequest.newBuilder(URI.create(root + "/models")).timeout(Duration.ofSeconds(30));
        if (token != null) {
            req.header("Authorization", "Bearer " + token);
        }
        try (HttpClient client = HttpClient.newHttpClient()) {
            HttpResponse<String> res = client.send(req.build(), HttpResponse.BodyHandlers.ofString());
            if (res.statusCode() != 200) {
                throw new IOException("GET " + root + "/models answered " + res.statusCode() + ": " + res.body());
            }
            return JsonParser.parseString(res.body()).getAsJsonObject().getAsJsonArray("data").get(0)
                    .getAsJsonObject().get("id").getAsString();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while asking " + root + "/models", e);
        } catch (RuntimeException e) {
            throw new IOException(root + "/models did not list a model: " + e.getMessage(), e);
        }
    }

    @Override
    public void close() throws InterruptedException {
        try {
            if (transport instanceof HttpTransport h) {
                h.close();
            }
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        } finally {
            if (local != null) {
                local.close();
            }
        }
    }
}
