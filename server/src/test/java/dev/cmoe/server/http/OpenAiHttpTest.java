package dev.cmoe.server.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.openai.client.OpenAIClient;
import com.openai.core.JsonValue;
import com.openai.core.http.StreamResponse;
import com.openai.errors.BadRequestException;
import com.openai.errors.InternalServerException;
import com.openai.errors.NotFoundException;
import com.openai.errors.OpenAIServiceException;
import com.openai.errors.RateLimitException;
import com.openai.errors.UnauthorizedException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionChoice;
import com.openai.models.completions.CompletionCreateParams;
import com.openai.models.models.Model;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.server.scheduler.SchedulerConfig;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The HTTP API driven by the official OpenAI Java SDK: chat and text completions, streamed and
 * not, equal to gRPC and to in-process generation; stop strings, usage, every error status, and
 * a client that goes away mid-stream.
 */
@Timeout(120)
class OpenAiHttpTest {
    private static final String PROMPT = "The jury said";
    private static HttpTestServer tiny;
    private static OpenAIClient client;

    @BeforeAll
    static void start() throws Exception {
        tiny = new HttpTestServer(SchedulerConfig.defaults().withMaxBatchTokens(24).withStreamWindow(4), null);
        client = tiny.client();
    }

    @AfterAll
    static void stop() throws Exception {
        tiny.close();
    }

    /** Greedy generation in-process, the reference every front end must equal. */
    private static String reference(String prompt, int maxNew, boolean[] hitEos) {
        TextTokenizer tok = HttpTestServer.model().tokenizer();
        Generator.Result r = Generator.generate(HttpTestServer.model().model(), tok.encodeIds(prompt, true), maxNew,
                SamplingParams.greedy(), HttpTestServer.eos(), t -> {
                });
        hitEos[0] = r.reason() == Generator.FinishReason.EOS_TOKEN;
        int n = hitEos[0] ? r.tokens().length - 1 : r.tokens().length; // the EOS token decodes to nothing anyway
        long[] ids = new long[n];
        for (int i = 0; i < n; i++) {
            ids[i] = r.tokens()[i];
        }
        return tok.decode(ids);
    }

    private static String grpc(String prompt, int maxNew) {
        Iterator<GenerateResponse> it = GenerationGrpc.newBlockingStub(tiny.channel)
                .withDeadlineAfter(60, TimeUnit.SECONDS)
                .generate(GenerateRequest.newBuilder().setText(prompt).setMaxNewTokens(maxNew).build());
        StringBuilder text = new StringBuilder();
        while (it.hasNext()) {
            GenerateResponse r = it.next();
            if (r.hasChunk()) {
                text.append(r.getChunk().getText());
            }
        }
        return text.toString();
    }

    private static CompletionCreateParams.Builder completion(String prompt, int maxTokens) {
        return CompletionCreateParams.builder().model(HttpTestServer.MODEL).prompt(prompt).maxTokens(maxTokens)
                .temperature(0.0);
    }

    private static ChatCompletionCreateParams.Builder chat(String user, int maxTokens) {
        return ChatCompletionCreateParams.builder().model(HttpTestServer.MODEL).addUserMessage(user)
                .maxCompletionTokens(maxTokens).temperature(0.0);
    }

    @Test
    void greedyCompletionEqualsGrpcAndInProcessGeneration() {
        boolean[] eos = new boolean[1];
        String expected = reference(PROMPT, 20, eos);
        assertFalse(expected.isEmpty());
        Completion c = client.completions().create(completion(PROMPT, 20).build());
        CompletionChoice choice = c.choices().getFirst();
        assertEquals(expected, choice.text());
        assertEquals(expected, grpc(PROMPT, 20));
        assertEquals(eos[0] ? CompletionChoice.FinishReason.STOP : CompletionChoice.FinishReason.LENGTH,
                choice.finishReason());
        assertTrue(c.id().startsWith("cmpl-"), c.id());
        assertEquals(HttpTestServer.MODEL, c.model());
        int promptTokens = HttpTestServer.model().tokenizer().encodeIds(PROMPT, true).length;
        assertEquals(promptTokens, c.usage().orElseThrow().promptTokens());
        if (!eos[0]) {
            assertEquals(20, c.usage().orElseThrow().completionTokens());
        }
        assertEquals(promptTokens + c.usage().orElseThrow().completionTokens(), c.usage().orElseThrow().totalTokens());
    }

    @Test
    void streamedCompletionEqualsTheWholeOneAndEndsWithUsage() {
        String whole = client.completions().create(completion(PROMPT, 16).build()).choices().getFirst().text();
        StringBuilder text = new StringBuilder();
        List<Completion> chunks = new ArrayList<>();
        try (StreamResponse<Completion> s = client.completions().createStreaming(completion(PROMPT, 16)
                .streamOptions(com.openai.models.chat.completions.ChatCompletionStreamOptions.builder()
                        .includeUsage(true).build()).build())) {
            s.stream().forEach(chunks::add);
        }
        for (Completion c : chunks) {
            c.choices().forEach(ch -> text.append(ch.text()));
        }
        assertEquals(whole, text.toString());
        assertTrue(chunks.size() > 3, "streamed in pieces: " + chunks.size());
        Completion last = chunks.getLast();
        assertTrue(last.choices().isEmpty(), "the usage chunk has no choices");
        assertEquals(HttpTestServer.model().tokenizer().encodeIds(PROMPT, true).length,
                last.usage().orElseThrow().promptTokens());
        CompletionChoice end = chunks.get(chunks.size() - 2).choices().getFirst();
        assertTrue(end.finishReason().equals(CompletionChoice.FinishReason.LENGTH)
                || end.finishReason().equals(CompletionChoice.FinishReason.STOP), end.toString());
    }

    @Test
    void chatRendersThePlainTemplateAndStreamsTheSameText() {
        String prompt = ChatTemplate.plain().render(List.of(java.util.Map.of("role", "user", "content", PROMPT)),
                true);
        assertEquals("user: The jury said\nassistant:", prompt);
        boolean[] eos = new boolean[1];
        String expected = reference(prompt, 14, eos);
        ChatCompletion c = client.chat().completions().create(chat(PROMPT, 14).build());
        assertEquals(expected, c.choices().getFirst().message().content().orElseThrow());
        assertEquals(expected, grpc(prompt, 14));
        assertEquals(eos[0] ? ChatCompletion.Choice.FinishReason.STOP : ChatCompletion.Choice.FinishReason.LENGTH,
                c.choices().getFirst().finishReason());
        assertTrue(c.id().startsWith("chatcmpl-"), c.id());

        StringBuilder streamed = new StringBuilder();
        List<ChatCompletionChunk> chunks = new ArrayList<>();
        try (StreamResponse<ChatCompletionChunk> s = client.chat().completions().createStreaming(chat(PROMPT, 14)
                .streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build())) {
            s.stream().forEach(chunks::add);
        }
        for (ChatCompletionChunk ch : chunks) {
            ch.choices().forEach(choice -> choice.delta().content().ifPresent(streamed::append));
        }
        assertEquals(expected, streamed.toString());
        assertEquals(ChatCompletionChunk.Choice.Delta.Role.ASSISTANT,
                chunks.getFirst().choices().getFirst().delta().role().orElseThrow());
        assertEquals(c.usage().orElseThrow().completionTokens(),
                chunks.getLast().usage().orElseThrow().completionTokens());
    }

    @Test
    void stopStringsEndTheTextBeforeThem() {
        String whole = client.completions().create(completion(PROMPT, 30).build()).choices().getFirst().text();
        assertTrue(whole.length() > 8, whole);
        String stop = whole.substring(whole.length() / 2, whole.length() / 2 + 3);
        String expected = whole.substring(0, whole.indexOf(stop));
        Completion c = client.completions().create(completion(PROMPT, 30).stopOfStrings(List.of("\u0000never", stop))
                .build());
        assertEquals(expected, c.choices().getFirst().text());
        assertEquals(CompletionChoice.FinishReason.STOP, c.choices().getFirst().finishReason());
        StringBuilder streamed = new StringBuilder();
        try (StreamResponse<Completion> s = client.completions().createStreaming(completion(PROMPT, 30).stop(stop)
                .build())) {
            s.stream().forEach(ch -> ch.choices().forEach(x -> streamed.append(x.text())));
        }
        assertEquals(expected, streamed.toString());
    }

    @Test
    void logprobsComeInEachEndpointsShape() {
        Completion c = client.completions().create(completion(PROMPT, 5).logprobs(3).build());
        var lp = c.choices().getFirst().logprobs().orElseThrow();
        assertEquals(5, lp.tokenLogprobs().orElseThrow().size());
        // alternatives are keyed by their text, so two tokens that decode alike count once
        int alternatives = lp.topLogprobs().orElseThrow().getFirst()._additionalProperties().size();
        assertTrue(alternatives >= 1 && alternatives <= 3, "alternatives: " + alternatives);
        assertEquals(5, lp.tokens().orElseThrow().size());
        ChatCompletion chat = client.chat().completions().create(chat(PROMPT, 5).logprobs(true).topLogprobs(2)
                .build());
        var content = chat.choices().getFirst().logprobs().orElseThrow().content().orElseThrow();
        assertEquals(5, content.size());
        assertEquals(2, content.getFirst().topLogprobs().size());
        // greedy: the chosen token is the most likely one
        assertEquals(content.getFirst().topLogprobs().getFirst().logprob(), content.getFirst().logprob(), 1e-5);
    }

    @Test
    void modelsListsTheServedModelWithItsExperts() throws Exception {
        List<Model> models = client.models().list().data();
        assertEquals(1, models.size());
        assertEquals(HttpTestServer.MODEL, models.getFirst().id());
        JsonValue meta = models.getFirst()._additionalProperties().get("metadata");
        String json = meta.toString();
        assertTrue(json.contains("carved=false") || json.contains("\"carved\":false"), json);
        assertTrue(json.contains("routed_experts"), json);
        HttpResponse<String> health = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                URI.create("http://127.0.0.1:" + tiny.http.port() + "/health")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, health.statusCode());
        assertTrue(health.body().contains("\"ok\""), health.body());
    }

    private static OpenAIServiceException assertStatus(Class<? extends OpenAIServiceException> type, int status,
                                                       Runnable call) {
        OpenAIServiceException e = assertThrows(type, call::run);
        assertEquals(status, e.statusCode());
        assertTrue(e.type().isPresent(), "an OpenAI error object: " + e.body());
        return e;
    }

    @SuppressWarnings("ReturnValueIgnored") // each call is made for the error it must throw
    @Test
    void badFieldsAre400NamingTheField() {
        record Case(String param, String message, Supplier<Object> call) {
        }
        List<Case> cases = List.of(
                new Case("max_tokens", "max_tokens must be > 0, got 0",
                        () -> client.completions().create(completion(PROMPT, 0).build())),
                new Case("max_completion_tokens", "max_completion_tokens = 5000 goes past the context",
                        () -> client.chat().completions().create(chat(PROMPT, 5000).build())),
                new Case("n", "n = 2 is not supported",
                        () -> client.chat().completions().create(chat(PROMPT, 4).n(2).build())),
                new Case("presence_penalty", "presence_penalty must be in [-2, 2] (0 disables it), got 2.5",
                        () -> client.chat().completions().create(chat(PROMPT, 4).presencePenalty(2.5).build())),
                new Case("frequency_penalty", "frequency_penalty must be in [-2, 2] (0 disables it), got -3.0",
                        () -> client.completions().create(completion(PROMPT, 4).frequencyPenalty(-3.0).build())),
                new Case("temperature", "temperature must be >= 0",
                        () -> client.completions().create(completion(PROMPT, 4).temperature(-1.0).build())),
                new Case("top_p", "top_p must be in (0, 1], got 0.0",
                        () -> client.completions().create(completion(PROMPT, 4).topP(0.0).build())),
                new Case("logprobs", "logprobs must be in [0, 20], got 21",
                        () -> client.completions().create(completion(PROMPT, 4).logprobs(21).build())),
                new Case("stop", "stop[0] is empty",
                        () -> client.completions().create(completion(PROMPT, 4).stop("").build())),
                new Case("prompt", "prompt is empty",
                        () -> client.completions().create(completion("", 4).build())),
                new Case("echo", "echo = true is not supported",
                        () -> client.completions().create(completion(PROMPT, 4).echo(true).build())));
        for (Case c : cases) {
            OpenAIServiceException e = assertStatus(BadRequestException.class, 400, () -> c.call().get());
            assertEquals(c.param(), e.param().orElse(null), c.message());
            String message = e.body().toString();
            assertTrue(message.contains(c.message()), "'" + message + "' says " + c.message());
            assertFalse(message.contains("java.") || message.contains("Exception"), "no Java names: " + message);
        }
        // ... and the server keeps serving
        assertFalse(client.completions().create(completion(PROMPT, 3).build()).choices().isEmpty());
    }

    @Test
    void anUnknownModelIs404() {
        OpenAIServiceException e = assertStatus(NotFoundException.class, 404, () -> client.completions().create(
                CompletionCreateParams.builder().model("gpt-4o").prompt(PROMPT).maxTokens(3).build()));
        assertEquals("model", e.param().orElseThrow());
        assertEquals("model_not_found", e.code().orElseThrow());
    }

    @Test
    void aBearerTokenIsRequiredWhenSet() throws Exception {
        try (HttpTestServer secured = new HttpTestServer(SchedulerConfig.defaults(), "s3cret")) {
            assertStatus(UnauthorizedException.class, 401, () -> secured.client("wrong").completions()
                    .create(completion(PROMPT, 3).build()));
            assertStatus(UnauthorizedException.class, 401, () -> secured.client("wrong").models().list());
            Completion ok = secured.client("s3cret").completions().create(completion(PROMPT, 3).build());
            assertEquals(3, ok.usage().orElseThrow().completionTokens());
        }
    }

    @Test
    void aFullQueueIs429AndDrainingIs503() throws Exception {
        try (HttpTestServer one = new HttpTestServer(SchedulerConfig.defaults().withMaxRunning(1).withMaxQueue(1),
                null)) {
            OpenAIClient c = one.client();
            one.hold();
            // own threads: the common pool may have a single worker on a small machine
            java.util.concurrent.ExecutorService callers = java.util.concurrent.Executors.newFixedThreadPool(2);
            CompletableFuture<Completion> running = CompletableFuture.supplyAsync(() -> c.completions()
                    .create(completion(PROMPT, 4).build()), callers);
            awaitStats(one, "one running", s -> s.running() == 1);
            CompletableFuture<Completion> queued = CompletableFuture.supplyAsync(() -> c.completions()
                    .create(completion(PROMPT, 4).build()), callers);
            awaitStats(one, "one queued", s -> s.queued() == 1);
            OpenAIServiceException full = assertStatus(RateLimitException.class, 429,
                    () -> c.completions().create(completion(PROMPT, 4).build()));
            assertEquals("queue_full", full.code().orElseThrow());
            assertEquals(1.0, one.requests("RESOURCE_EXHAUSTED"));

            one.http.startDraining();
            OpenAIServiceException draining = assertStatus(InternalServerException.class, 503,
                    () -> c.chat().completions().create(chat(PROMPT, 4).build()));
            assertTrue(draining.body().toString().contains("draining"), draining.body().toString());
            HttpResponse<String> health = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + one.http.port() + "/health")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(503, health.statusCode());
            // what was admitted before draining still completes
            one.unhold();
            assertEquals(4, running.get(60, TimeUnit.SECONDS).usage().orElseThrow().completionTokens());
            assertEquals(4, queued.get(60, TimeUnit.SECONDS).usage().orElseThrow().completionTokens());
            callers.shutdown();
        }
    }

    @Test
    void aClientThatLeavesMidStreamFreesItsSequenceWithinOneStep() throws Exception {
        try (HttpTestServer one = new HttpTestServer(SchedulerConfig.defaults(), null)) {
            one.hold();
            one.release(3); // prefill and two decode steps
            CompletionCreateParams params = completion(PROMPT, 100)
                    .putAdditionalBodyProperty("ignore_eos", JsonValue.from(true)).build();
            try (StreamResponse<Completion> s = one.client().completions().createStreaming(params)) {
                Iterator<Completion> it = s.stream().iterator();
                assertTrue(it.hasNext());
                assertFalse(it.next().choices().isEmpty());
            } // closing the stream closes the connection
            awaitStats(one, "the sequence gone from the batch", st -> st.running() == 0 && st.queued() == 0);
            long stepsAtLeave = one.stats().steps();
            one.release(1); // at most the step in flight finishes; its cache is then released
            awaitStats(one, "no KV cache held", st -> st.kvBytes() == 0);
            assertTrue(one.stats().steps() <= stepsAtLeave + 1, "no step ran for the departed client");
            assertEquals(1.0, one.requests("CANCELLED"));
            assertEquals(0.0, one.requests("OK"));
            assertEquals(0, one.http.inFlight());
        }
    }

    private static void awaitStats(HttpTestServer s, String what,
                                   java.util.function.Predicate<dev.cmoe.server.scheduler.SchedulerActor.Stats> ok)
            throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        var st = s.stats();
        while (!ok.test(st)) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("not " + what + " within 30 s: " + st);
            }
            Thread.onSpinWait();
            st = s.stats();
        }
    }

    @Test
    void completionIdsDiffer() {
        Completion a = client.completions().create(completion(PROMPT, 2).build());
        Completion b = client.completions().create(completion(PROMPT, 2).build());
        assertNotEquals(a.id(), b.id());
    }

    @Test
    void presenceAndFrequencyPenaltiesChangeTheGreedyText() {
        String plain = client.completions().create(completion(PROMPT, 24)
                .putAdditionalBodyProperty("ignore_eos", JsonValue.from(true)).build()).choices().getFirst().text();
        String penalised = client.completions().create(completion(PROMPT, 24).presencePenalty(2.0)
                .frequencyPenalty(2.0).putAdditionalBodyProperty("ignore_eos", JsonValue.from(true)).build())
                .choices().getFirst().text();
        // the random tiny model repeats itself under greedy decoding; the penalties must break that
        assertNotEquals(plain, penalised);
        long distinctPlain = plain.chars().distinct().count();
        long distinctPenalised = penalised.chars().distinct().count();
        assertTrue(distinctPenalised >= distinctPlain, plain + " | " + penalised);
    }

    @Test
    void anOversizedBodyIs413WithAnErrorObject() throws Exception {
        String big = "{\"model\": \"tiny-llama\", \"prompt\": \"" + "a".repeat(HttpApiServer.MAX_BODY_BYTES) + "\"}";
        HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                URI.create("http://127.0.0.1:" + tiny.http.port() + "/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofString(big)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(413, r.statusCode());
        assertTrue(r.body().contains("\"code\":\"request_too_large\""), r.body());
        // ... and the server keeps serving
        assertFalse(client.completions().create(completion(PROMPT, 2).build()).choices().isEmpty());
    }
}
