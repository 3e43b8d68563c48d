package dev.cmoe.server.grpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.model.testing.TinyCheckpoint;
import dev.cmoe.proto.v1.AbortRequest;
import dev.cmoe.proto.v1.FinishReason;
import dev.cmoe.proto.v1.Final;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GetModelInfoRequest;
import dev.cmoe.proto.v1.ModelInfo;
import dev.cmoe.proto.v1.TokenIds;
import dev.cmoe.server.scheduler.SchedulerConfig;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Generate, Abort, GetModelInfo and health over the real gRPC stack (in-process transport) on a tiny dense model. */
@Timeout(120)
class GenerateServiceTest {
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static TinyServer tiny;

    @BeforeAll
    static void start() throws Exception {
        // A small budget and window so that prefill is chunked and flow control bites.
        tiny = TinyServer.start(SchedulerConfig.defaults().withMaxBatchTokens(24).withStreamWindow(4));
    }

    @AfterAll
    static void stop() throws Exception {
        tiny.close();
    }

    private static GenerateRequest.Builder text(String prompt, int maxNew) {
        return GenerateRequest.newBuilder().setText(prompt).setMaxNewTokens(maxNew);
    }

    private static Final finalOf(List<GenerateResponse> messages) {
        GenerateResponse last = messages.getLast();
        assertTrue(last.hasFinal(), "the stream ends with a Final: " + last);
        return last.getFinal();
    }

    @Test
    void eightConcurrentGreedyRequestsEqualGeneratorAlone() throws Exception {
        TextTokenizer tok = TinyServer.model().tokenizer();
        String[] words = TinyCheckpoint.TEXT.strip().split("\\s+");
        int n = 8;
        List<String> prompts = new ArrayList<>();
        int[] maxNew = new int[n];
        int[][] expected = new int[n][];
        Generator.FinishReason[] reasons = new Generator.FinishReason[n];
        for (int i = 0; i < n; i++) {
            prompts.add(String.join(" ", List.of(words).subList(i, i + 1 + 3 * i)));
            maxNew[i] = 6 + 5 * i;
            Generator.Result r = Generator.generate(TinyServer.model().model(), tok.encodeIds(prompts.get(i), true),
                    maxNew[i], SamplingParams.greedy(), TinyServer.eos(), t -> {
                    });
            expected[i] = r.tokens();
            reasons[i] = r.reason();
        }
        assertTrue(java.util.Arrays.stream(expected).filter(t -> t.length > 5).count() >= n / 2,
                "the fixture generates long enough sequences to interleave");
        List<Responses> streams = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (i > 0) {
                streams.get(i - 1).awaitFirst(); // staggered starts: each request joins a batch already running
            }
            Responses s = Responses.eager();
            streams.add(s);
            tiny.async().generate(text(prompts.get(i), maxNew[i]).setRequestId("eq-" + i).build(), s);
        }
        for (int i = 0; i < n; i++) {
            List<GenerateResponse> messages = streams.get(i).await(WAIT);
            assertArrayEquals(expected[i], streams.get(i).tokens(), "request " + i + ": " + prompts.get(i));
            Final f = finalOf(messages);
            assertEquals(reasons[i].name(), f.getFinishReason().name(), "request " + i);
            assertEquals(expected[i].length, f.getUsage().getCompletionTokens());
            assertEquals(tok.encodeIds(prompts.get(i), true).length, f.getUsage().getPromptTokens());
            String id = "eq-" + i;
            assertTrue(messages.stream().allMatch(m -> m.getRequestId().equals(id)), "every message names " + id);
        }
        assertTrue(tiny.metrics.registry().get("cmoe.batch.sequences").summary().max() > 1,
                "requests shared steps");
        tiny.awaitIdle();
    }

    @Test
    void eachTokenStreamsAsAChunkWithRunningCountsAndLogprobs() throws Exception {
        Responses s = Responses.eager();
        tiny.async().generate(text("The jury said", 5).setIgnoreEos(true).setLogprobs(3).build(), s);
        List<GenerateResponse> messages = s.await(WAIT);
        List<GenerateResponse> chunks = messages.stream().filter(GenerateResponse::hasChunk).toList();
        assertEquals(5, chunks.size(), "one chunk per token");
        for (int i = 0; i < chunks.size(); i++) {
            var c = chunks.get(i).getChunk();
            assertEquals(i + 1, c.getCompletionTokens());
            assertEquals(1, c.getLogprobsCount());
            assertEquals(3, c.getLogprobs(0).getTopCount());
            // Greedy picks the most likely token, so it heads the top list.
            assertEquals(c.getTokenIds(0), c.getLogprobs(0).getTop(0).getTokenId());
        }
        assertFalse(messages.getFirst().getRequestId().isEmpty(), "the server assigns a request id");
        assertEquals(FinishReason.LENGTH, finalOf(messages).getFinishReason());
    }

    @Test
    void aSlowConsumerDoesNotBlockOtherStreams() throws Exception {
        Responses slow = new Responses(1); // takes one message, then reads nothing more
        tiny.async().generate(text("The election", 40).setIgnoreEos(true).build(), slow);
        slow.awaitFirst();
        Responses fast = Responses.eager();
        tiny.async().generate(text("The city", 30).setIgnoreEos(true).build(), fast);
        assertEquals(30, fast.await(WAIT).stream().filter(GenerateResponse::hasChunk).count());
        assertEquals(1, slow.messages.size(), "the slow client got only what it asked for");
        assertFalse(slow.done.isDone());
        assertEquals(1, tiny.stats().running(), "the slow stream is parked, not dropped");
        slow.request(1000);
        List<GenerateResponse> all = slow.await(WAIT);
        assertEquals(40, slow.tokens().length, "nothing was lost while parked");
        assertEquals(FinishReason.LENGTH, finalOf(all).getFinishReason());
        tiny.awaitIdle();
    }

    @Test
    void cancellingTheCallFreesTheCache() throws Exception {
        Responses s = new Responses(1);
        tiny.async().generate(text("The jury", 100).setIgnoreEos(true).build(), s);
        s.awaitFirst();
        assertTrue(tiny.stats().kvBytes() > 0, "the running sequence holds a cache");
        s.cancel();
        tiny.awaitIdle();
    }

    @Test
    void anExpiredDeadlineEndsTheRequestAndFreesTheCache() throws Exception {
        Responses s = new Responses(1);
        tiny.async().withDeadlineAfter(300, TimeUnit.MILLISECONDS)
                .generate(text("The jury", 100).setIgnoreEos(true).build(), s);
        ExecutionException e = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
                () -> s.await(WAIT));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, Status.fromThrowable(e.getCause()).getCode());
        tiny.awaitIdle();
    }

    @Test
    void abortEndsTheStreamWithAborted() throws Exception {
        Responses s = new Responses(1);
        tiny.async().generate(text("The jury", 100).setIgnoreEos(true).setRequestId("to-abort").build(), s);
        s.awaitFirst();
        assertTrue(tiny.blocking().abort(AbortRequest.newBuilder().setRequestId("to-abort").build()).getFound());
        s.request(1000);
        List<GenerateResponse> messages = s.await(WAIT);
        assertEquals(FinishReason.ABORTED, finalOf(messages).getFinishReason());
        assertTrue(s.tokens().length < 100);
        assertFalse(tiny.blocking().abort(AbortRequest.newBuilder().setRequestId("to-abort").build()).getFound());
        tiny.awaitIdle();
    }

    @Test
    void tokenIdPromptsWork() throws Exception {
        Responses s = Responses.eager();
        tiny.async().generate(GenerateRequest.newBuilder().setTokenIds(TokenIds.newBuilder().addIds(1).addIds(40)
                .addIds(41)).setMaxNewTokens(4).setIgnoreEos(true).build(), s);
        assertEquals(3, finalOf(s.await(WAIT)).getUsage().getPromptTokens());
        assertEquals(4, s.tokens().length);
    }

    @Test
    void modelInfoAndHealth() {
        ModelInfo info = tiny.blocking().getModelInfo(GetModelInfoRequest.getDefaultInstance());
        assertEquals(300, info.getVocabSize());
        assertEquals(128, info.getContextLength());
        assertEquals("llama", info.getModelType());
        assertEquals(0, info.getRoutedExperts());
        HealthCheckResponse health = HealthGrpc.newBlockingStub(tiny.channel).withDeadlineAfter(10, TimeUnit.SECONDS)
                .check(HealthCheckRequest.newBuilder().setService("cmoe.v1.Generation").build());
        assertEquals(HealthCheckResponse.ServingStatus.SERVING, health.getStatus());
    }

    @Test
    void reflectionListsTheServiceForGrpcurl() throws Exception {
        java.util.concurrent.CompletableFuture<io.grpc.reflection.v1.ServerReflectionResponse> answer =
                new java.util.concurrent.CompletableFuture<>();
        var requests = io.grpc.reflection.v1.ServerReflectionGrpc.newStub(tiny.channel)
                .withDeadlineAfter(10, TimeUnit.SECONDS)
                .serverReflectionInfo(new io.grpc.stub.StreamObserver<>() {
                    @Override
                    public void onNext(io.grpc.reflection.v1.ServerReflectionResponse value) {
                        answer.complete(value);
                    }

                    @Override
                    public void onError(Throwable t) {
                        answer.completeExceptionally(t);
                    }

                    @Override
                    public void onCompleted() {
                    }
                });
        requests.onNext(io.grpc.reflection.v1.ServerReflectionRequest.newBuilder().setListServices("*").build());
        List<String> services = answer.get(10, TimeUnit.SECONDS).getListServicesResponse().getServiceList().stream()
                .map(io.grpc.reflection.v1.ServiceResponse::getName).toList();
        requests.onCompleted();
        assertTrue(services.contains("cmoe.v1.Generation"), services.toString());
        assertTrue(services.contains("grpc.health.v1.Health"), services.toString());
    }

    @Test
    void duplicateRequestIdsAreRefused() throws Exception {
        Responses a = new Responses(1);
        tiny.async().generate(text("The jury", 50).setIgnoreEos(true).setRequestId("twice").build(), a);
        a.awaitFirst();
        Responses b = Responses.eager();
        tiny.async().generate(text("The city", 5).setRequestId("twice").build(), b);
        ExecutionException e = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
                () -> b.await(WAIT));
        assertInstanceOf(StatusRuntimeException.class, e.getCause());
        assertEquals(Status.Code.ALREADY_EXISTS, Status.fromThrowable(e.getCause()).getCode());
        a.cancel();
        tiny.awaitIdle();
    }
}
