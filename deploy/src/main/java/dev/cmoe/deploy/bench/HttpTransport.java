package dev.cmoe.deploy.bench;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.proto.v1.GenerateRequest;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * The load generator's requests as streamed OpenAI {@code /v1/completions} calls (server-sent
 * events, {@code stream_options.include_usage}), one virtual thread per call. A token's arrival
 * time is the arrival of the event that carries it; the tokens of an event are counted from its
 * {@code logprobs.tokens} when the server sends them, else as one, and the usage event gives the
 * prompt length. Failures are recorded under the gRPC code names of the matching HTTP statuses
 * (429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, ...), so reports read alike for both transports.
 */
public final class HttpTransport implements Transport, AutoCloseable {
    private final URI endpoint;
    private final String model;
    private final String token;
    private final HttpClient client;
    private final ExecutorService threads = Executors.newVirtualThreadPerTaskExecutor();

    /**
     * @param baseUrl the API root, e.g. {@code http://127.0.0.1:8000/v1}
     * @param model the model id to send
     * @param token bearer token, or null
     */
    public HttpTransport(String baseUrl, String model, String token) {
        String root = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
        this.endpoint = URI.create(root + "/completions");
        this.model = model;
        this.token = token;
        this.client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).executor(threads)
                .connectTimeout(Duration.ofSeconds(10)).build();
    }

    @Override
    public String describe() {
        return "HTTP POST " + endpoint + " (stream), model " + model;
    }

    /** The completions body for a benchmark request (token-id or text prompt, EOS ignored as asked). */
    JsonObject body(GenerateRequest r) {
        JsonObject b = new JsonObject();
        b.addProperty("model", model);
        if (r.hasTokenIds()) {
            JsonArray ids = new JsonArray();
            r.getTokenIds().getIdsList().forEach(ids::add);
            b.add("prompt", ids);
        } else {
            b.addProperty("prompt", r.getText());
        }
        b.addProperty("max_tokens", r.getMaxNewTokens());
        b.addProperty("temperature", r.getTemperature());
        b.addProperty("seed", r.getSeed());
        if (r.getIgnoreEos()) {
            b.addProperty("ignore_eos", true); // an extension (vLLM's name); OpenAI itself has none
        }
        b.addProperty("stream", true);
        JsonObject options = new JsonObject();
        options.addProperty("include_usage", true);
        b.add("stream_options", options);
        return b;
    }

    @Override
    public Transport.Call start(long index, LoadRunner.Issue issue, LongSupplier clock, Duration timeout,
                                Consumer<RequestResult> done) {
        Call call = new Call(index, issue, clock, done);
        HttpRequest.Builder req = HttpRequest.newBuilder(endpoint).timeout(timeout)
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body(issue.request()).toString()));
        if (token != null) {
            req.header("Authorization", "Bearer " + token);
        }
        threads.execute(() -> call.run(req.build()));
        return call;
    }

    @Override
    public void close() {
        threads.shutdownNow();
    }

    /** One call: reads the event stream on its own virtual thread. */
    private final class Call implements Transport.Call {
        private final long index;
        private final LoadRunner.Issue issue;
        private final LongSupplier clock;
        private final Consumer<RequestResult> done;
        private final long start;
        private long[] times = new long[16];
        private int count;
        private int promptTokens;
        private String finishReason = "";
        private boolean cancelled;
        private boolean ended;
        private volatile InputStream body;

        Call(long index, LoadRunner.Issue issue, LongSupplier clock, Consumer<RequestResult> done) {
            this.index = index;
            this.issue = issue;
            this.clock = clock;
            this.done = done;
            this.start = clock.getAsLong();
        }

        void run(HttpRequest request) {
            try {
                HttpResponse<InputStream> res = client.send(request, HttpResponse.BodyHandlers.ofInputStream());
                body = res.body();
                if (res.statusCode() != 200) {
                    String text = new String(res.body().readAllBytes(), StandardCharsets.UTF_8);
                    end(status(res.statusCode()), message(text));
                    return;
                }
                try (BufferedReader lines = new BufferedReader(new InputStreamReader(res.body(),
                        StandardCharsets.UTF_8))) {
                    String error = null;
                    for (String line = lines.readLine(); line != null; line = lines.readLine()) {
                        if (!line.startsWith("data: ")) {
                            continue;
                        }
                        String data = line.substring(6).strip();
                        if (data.equals("[DONE]")) {
                            break;
                        }
                        JsonObject event = JsonParser.parseString(data).getAsJsonObject();
                        if (event.has("error")) {
                            error = message(data);
                            continue;
                        }
                        if (onEvent(event)) {
                            cancelled = true;
                            end("CANCELLED", "benchmark cancels after " + count + " tokens");
                            return;
                        }
                    }
                    end(error == null ? "OK" : "INTERNAL", error == null ? "" : error);
                }
            } catch (java.net.http.HttpTimeoutException e) {
                end("DEADLINE_EXCEEDED", "no answer within the timeout");
            } catch (IOException | RuntimeException e) {
                end(cancelled ? "CANCELLED" : "UNAVAILABLE", String.valueOf(e.getMessage()));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                end("CANCELLED", "interrupted");
            }
        }

        /** Records an event's tokens; true when the request is to be cancelled now. */
        private synchronized boolean onEvent(JsonObject event) {
            long t = clock.getAsLong();
            JsonElement usage = event.get("usage");
            if (usage != null && usage.isJsonObject()) {
                promptTokens = usage.getAsJsonObject().get("prompt_tokens").getAsInt();
            }
            JsonArray choices = event.getAsJsonArray("choices");
            if (choices == null || choices.isEmpty()) {
                return false;
            }
            JsonObject choice = choices.get(0).getAsJsonObject();
            JsonElement reason = choice.get("finish_reason");
            if (reason != null && !reason.isJsonNull()) {
                finishReason = reason.getAsString().equals("length") ? "LENGTH" : "STOP";
                return false; // the closing event carries no token
            }
            int tokens = 1;
            JsonElement lp = choice.get("logprobs");
            if (lp != null && lp.isJsonObject() && lp.getAsJsonObject().get("tokens") instanceof JsonArray a) {
                tokens = a.size();
            }
            for (int i = 0; i < tokens; i++) {
                if (count == times.length) {
                    times = Arrays.copyOf(times, count * 2);
                }
                times[count++] = t;
            }
            return issue.cancelAfterTokens() > 0 && count >= issue.cancelAfterTokens();
        }

        @Override
        public void abandon() {
            InputStream b = body;
            end("HUNG", "no end after the deadline");
            if (b != null) {
                try {
                    b.close();
                } catch (IOException e) {
                    // closing is all that is left to do with it
                }
            }
        }

        private synchronized void end(String status, String why) {
            if (ended) {
                return;
            }
            ended = true;
            InputStream b = body;
            if (b != null && !status.equals("OK")) {
                try {
                    b.close(); // a cancel: the server sees the connection close and frees the sequence
                } catch (IOException e) {
                    // nothing else to free
                }
            }
            done.accept(new RequestResult(index, issue.phase(), start, clock.getAsLong(), Arrays.copyOf(times, count),
                    new int[count], promptTokens, status, finishReason, cancelled, why));
        }
    }

    /** The gRPC code name the benchmark reports for an HTTP status. */
    static String status(int http) {
        return switch (http) {
            case 400 -> "INVALID_ARGUMENT";
            case 401 -> "UNAUTHENTICATED";
            case 403 -> "PERMISSION_DENIED";
            case 404 -> "NOT_FOUND";
            case 408 -> "DEADLINE_EXCEEDED";
            case 429 -> "RESOURCE_EXHAUSTED";
            case 503 -> "UNAVAILABLE";
            default -> http >= 500 ? "INTERNAL" : "HTTP_" + http;
        };
    }

    private static String message(String body) {
        try {
            JsonObject o = JsonParser.parseString(body).getAsJsonObject();
            return o.getAsJsonObject("error").get("message").getAsString();
        } catch (RuntimeException e) {
            return body.length() > 200 ? body.substring(0, 200) : body;
        }
    }
}
