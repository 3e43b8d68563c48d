package dev.cmoe.server.grpc;

import org.awaitility.Awaitility;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.cmoe.proto.v1.FinishReason;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GetModelInfoRequest;
import dev.cmoe.proto.v1.TokenIds;
import dev.cmoe.server.scheduler.FailingRunner;
import dev.cmoe.server.scheduler.SchedulerConfig;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Every way a request is refused or fails: bad input, a full queue, a missing token, a failing step. */
@Timeout(120)
class RejectionTest {
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static TinyServer tiny;

    @BeforeAll
    static void start() throws Exception {
        tiny = TinyServer.start(SchedulerConfig.defaults());
    }

    @AfterAll
    static void stop() throws Exception {
        tiny.close();
    }

    private static GenerateRequest.Builder ok() {
        return GenerateRequest.newBuilder().setText("The jury").setMaxNewTokens(4);
    }

    private static TokenIds ids(int... ids) {
        return TokenIds.newBuilder().addAllIds(IntStream.of(ids).boxed().toList()).build();
    }

    static Stream<Arguments> badRequests() {
        return Stream.of(
                Arguments.of("no prompt", GenerateRequest.newBuilder().setMaxNewTokens(4), "prompt is empty"),
                Arguments.of("empty text", ok().setText(""), "prompt.text is empty"),
                Arguments.of("empty token ids", ok().setTokenIds(ids()), "prompt.token_ids is empty"),
                Arguments.of("invalid UTF-8", ok().setTextBytes(ByteString.copyFrom(new byte[] {'a', (byte) 0xC3, '('})),
                        "prompt.text is not valid UTF-8"),
                Arguments.of("unknown token id", ok().setTokenIds(ids(1, 5000)), "prompt.token_ids[1] = 5000"),
                Arguments.of("negative token id", ok().setTokenIds(ids(-3)), "prompt.token_ids[0] = -3"),
                Arguments.of("prompt longer than the context", ok().setTokenIds(ids(new int[200])),
                        "prompt of 200 tokens does not fit the context of 128"),
                Arguments.of("max_new_tokens 0", ok().setMaxNewTokens(0), "max_new_tokens must be > 0, got 0"),
                Arguments.of("max_new_tokens negative", ok().setMaxNewTokens(-5), "max_new_tokens must be > 0, got -5"),
                Arguments.of("max_new_tokens past the context", ok().setMaxNewTokens(500), "max_new_tokens = 500"),
                Arguments.of("min above max", ok().setMinNewTokens(9), "min_new_tokens"),
                Arguments.of("negative temperature", ok().setTemperature(-0.5), "temperature must be >= 0 (0 is greedy), got -0.5"),
                Arguments.of("NaN temperature", ok().setTemperature(Double.NaN), "temperature"),
                Arguments.of("top_p 0", ok().setTopP(0), "top_p must be in (0, 1], got 0.0"),
                Arguments.of("top_p above 1", ok().setTopP(1.5), "top_p must be in (0, 1], got 1.5"),
                Arguments.of("negative top_k", ok().setTopK(-1), "top_k must be >= 0 (0 disables it), got -1"),
                Arguments.of("min_p 1", ok().setMinP(1), "min_p"),
                Arguments.of("repetition_penalty 0", ok().setRepetitionPenalty(0), "repetition_penalty"),
                Arguments.of("unknown stop token", ok().addStopTokenIds(300), "stop_token_ids[0] = 300"),
                Arguments.of("empty stop string", ok().addStop(""), "stop[0] is empty"),
                Arguments.of("invalid UTF-8 stop string", ok().addStopBytes(ByteString.copyFrom(new byte[] {(byte) 0xFF})),
                        "stop[0] is not valid UTF-8"),
                Arguments.of("too many logprobs", ok().setLogprobs(21), "logprobs must be in [0, 20], got 21"),
                // MBs used to be tokenised in full before the context check: seconds of CPU, GBs of RSS.
                // (Past GrpcServer.MIN_INBOUND_BYTES the transport refuses them even earlier: EdgeGuardTest.)
                Arguments.of("a 1 MB prompt", ok().setText("jury ".repeat(200_000)),
                        "prompt.text is 1000000 bytes, over the limit of "),
                Arguments.of("a prompt one byte over the limit", ok().setText("j".repeat((int) TinyServer.maxPromptBytes() + 1)),
                        "bytes (the context of 128 tokens"),
                Arguments.of("a prompt at the byte limit is tokenised", ok().setText("j".repeat((int) TinyServer.maxPromptBytes())),
                        "does not fit the context of 128"),
                Arguments.of("token ids far past the context", ok().setTokenIds(ids(new int[100_000])),
                        "prompt of 100000 tokens does not fit the context of 128"),
                Arguments.of("a 257-byte request id", ok().setRequestId("r".repeat(257)),
                        "request_id is 257 bytes, over the limit of 256"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badRequests")
    void badInputAnswersInvalidArgumentNamingTheField(String name, GenerateRequest.Builder request, String message)
            throws Exception {
        Responses s = Responses.eager();
        tiny.async().generate(request.build(), s);
        ExecutionException e = assertThrows(ExecutionException.class, () -> s.await(WAIT));
        Status status = Status.fromThrowable(e.getCause());
        assertEquals(Status.Code.INVALID_ARGUMENT, status.getCode(), name);
        assertTrue(status.getDescription().contains(message), "'" + status.getDescription() + "' names " + message);
        // ... and the server keeps serving.
        Responses good = Responses.eager();
        tiny.async().generate(ok().setIgnoreEos(true).build(), good);
        assertEquals(4, good.await(WAIT).stream().filter(GenerateResponse::hasChunk).count());
    }

    @Test
    void aFullQueueAnswersResourceExhaustedWhileAdmittedRequestsComplete() throws Exception {
        try (TinyServer one = TinyServer.start(SchedulerConfig.defaults().withMaxRunning(1).withMaxQueue(1)
                .withStreamWindow(2))) {
            Responses running = new Responses(1); // holds the only slot until it reads on
            one.async().generate(ok().setMaxNewTokens(20).setIgnoreEos(true).build(), running);
            running.awaitFirst();
            Responses queued = Responses.eager();
            one.async().generate(ok().setIgnoreEos(true).build(), queued);
            Awaitility.await("the second request queues").atMost(WAIT).pollInterval(Duration.ofMillis(10))
                    .until(() -> one.stats().queued() >= 1);
            Responses refused = Responses.eager();
            one.async().generate(ok().build(), refused);
            ExecutionException e = assertThrows(ExecutionException.class, () -> refused.await(WAIT));
            Status status = Status.fromThrowable(e.getCause());
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, status.getCode());
            assertTrue(status.getDescription().contains("queue is full"), status.getDescription());
            running.request(1000);
            assertEquals(20, running.await(WAIT).stream().filter(GenerateResponse::hasChunk).count());
            assertEquals(4, queued.await(WAIT).stream().filter(GenerateResponse::hasChunk).count());
            one.awaitIdle();
        }
    }

    @Test
    void aFailureInsideOneRequestsStepEndsItWithInternal() throws Exception {
        try (TinyServer failing = TinyServer.start(SchedulerConfig.defaults(), r -> new FailingRunner(r, "boom"),
                null)) {
            Responses other = Responses.eager();
            failing.async().generate(ok().setMaxNewTokens(10).setIgnoreEos(true).build(), other);
            Responses boom = Responses.eager();
            failing.async().generate(ok().setRequestId("boom").build(), boom);
            ExecutionException e = assertThrows(ExecutionException.class, () -> boom.await(WAIT));
            Status status = Status.fromThrowable(e.getCause());
            assertEquals(Status.Code.INTERNAL, status.getCode());
            assertTrue(status.getDescription().contains("injected failure for boom"), status.getDescription());
            List<GenerateResponse> done = other.await(WAIT);
            assertEquals(FinishReason.LENGTH, done.getLast().getFinal().getFinishReason());
            failing.awaitIdle();
        }
    }

    @Test
    void aFailureAfterStreamingBeganArrivesInStream() throws Exception {
        // The request fails at the step that feeds its third generated token.
        try (TinyServer failing = TinyServer.start(SchedulerConfig.defaults(), r -> new FailingRunner(r,
                e -> e.requestId().equals("late") && e.history().length >= 4 + 3), null)) {
            Responses late = Responses.eager();
            failing.async().generate(GenerateRequest.newBuilder().setRequestId("late")
                    .setTokenIds(ids(1, 40, 41, 42)).setMaxNewTokens(10).setIgnoreEos(true).build(), late);
            List<GenerateResponse> messages = late.await(WAIT);
            assertEquals(3, late.tokens().length, "the tokens before the failure were streamed");
            GenerateResponse error = messages.get(messages.size() - 2);
            assertEquals(Status.Code.INTERNAL.value(), error.getError().getCode());
            assertTrue(error.getError().getMessage().contains("injected failure for late"), error.toString());
            assertEquals(FinishReason.ERROR, messages.getLast().getFinal().getFinishReason());
            failing.awaitIdle();
        }
    }

    @Test
    void aBearerTokenIsRequiredOnEveryCall() throws Exception {
        try (TinyServer secured = TinyServer.start(SchedulerConfig.defaults(), r -> r, "s3cret")) {
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                    () -> secured.blocking().getModelInfo(GetModelInfoRequest.getDefaultInstance()));
            assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
            Metadata wrong = new Metadata();
            wrong.put(BearerTokenInterceptor.AUTHORIZATION, "Bearer guess");
            e = assertThrows(StatusRuntimeException.class, () -> secured.blocking()
                    .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(wrong))
                    .getModelInfo(GetModelInfoRequest.getDefaultInstance()));
            assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
            Metadata right = new Metadata();
            right.put(BearerTokenInterceptor.AUTHORIZATION, "Bearer s3cret");
            assertEquals(300, secured.blocking().withInterceptors(MetadataUtils.newAttachHeadersInterceptor(right))
                    .getModelInfo(GetModelInfoRequest.getDefaultInstance()).getVocabSize());
        }
    }
}
