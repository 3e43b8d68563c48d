package dev.cmoe.server.grpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.server.scheduler.KvCacheFailingRunner;
import dev.cmoe.server.scheduler.DelegatingRunner;
import dev.cmoe.server.scheduler.ModelRunner;
import dev.cmoe.server.scheduler.ScheduledBatch;
import dev.cmoe.server.scheduler.SchedulerConfig;
import dev.cmoe.server.scheduler.StepOutput;
import dev.cmoe.model.llama.KvCache;
import io.grpc.CallOptions;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.reflection.v1.ServerReflectionGrpc;
import io.grpc.reflection.v1.ServerReflectionRequest;
import io.grpc.reflection.v1.ServerReflectionResponse;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.slf4j.LoggerFactory;

/** Hostile bytes and failing internals at the gRPC edge: clear statuses, no class names, a quiet log. */
@Timeout(120)
class EdgeGuardTest {
    private static final Duration WAIT = Duration.ofSeconds(60);

    /** Sends raw bytes as a Generate request, the way a broken or hostile client would. */
    private static final MethodDescriptor<byte[], byte[]> RAW_GENERATE = MethodDescriptor.<byte[], byte[]>newBuilder()
            .setType(MethodDescriptor.MethodType.SERVER_STREAMING)
            .setFullMethodName(GenerationGrpc.getGenerateMethod().getFullMethodName())
            .setRequestMarshaller(new Bytes()).setResponseMarshaller(new Bytes()).build();

    private final List<LogRecord> grpcLog = Collections.synchronizedList(new ArrayList<>());
    private final Handler jul = new Handler() {
        @Override
        public void publish(LogRecord r) {
            grpcLog.add(r);
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };
    private final ListAppender<ILoggingEvent> clientErrorLines = new ListAppender<>();

    @BeforeEach
    void captureLogs() {
        java.util.logging.Logger.getLogger("io.grpc").addHandler(jul);
        clientErrorLines.start();
        ((Logger) LoggerFactory.getLogger(ClientErrorLog.class)).addAppender(clientErrorLines);
    }

    @AfterEach
    void releaseLogs() {
        java.util.logging.Logger.getLogger("io.grpc").removeHandler(jul);
        ((Logger) LoggerFactory.getLogger(ClientErrorLog.class)).detachAppender(clientErrorLines);
    }

    private static Status rawCall(TinyServer tiny, byte[] request) {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> ClientCalls.blockingServerStreamingCall(
                tiny.channel, RAW_GENERATE, CallOptions.DEFAULT.withDeadlineAfter(30, TimeUnit.SECONDS), request)
                .forEachRemaining(b -> { }));
        return e.getStatus();
    }

    @Test
    void malformedProtobufAndInvalidUtf8AnswerInvalidArgumentAndLogOneLineNotATracePerCall() throws Exception {
        try (TinyServer tiny = TinyServer.start(SchedulerConfig.defaults())) {
            byte[] truncated = {0x12, 0x40, 'a', 'b'};                // text field claims 64 bytes, holds 2
            byte[] badUtf8Id = {0x0A, 0x02, (byte) 0xC3, 0x28, 0x12, 0x01, 'a'}; // request_id is not UTF-8
            byte[] badWireType = {0x0F};                              // field 1 with wire type 7
            for (int i = 0; i < 30; i++) {
                Status s = rawCall(tiny, i % 3 == 0 ? truncated : i % 3 == 1 ? badUtf8Id : badWireType);
                assertEquals(Status.Code.INVALID_ARGUMENT, s.getCode(), s.toString());
                assertTrue(s.getDescription().startsWith("request is not a valid cmoe.v1.GenerateRequest: "),
                        s.getDescription());
                assertFalse(s.getDescription().contains("Exception"), s.getDescription());
            }
            assertTrue(rawCall(tiny, badUtf8Id).getDescription().contains("invalid UTF-8"));
            List<LogRecord> traces = grpcLog.stream().filter(r -> r.getThrown() != null).toList();
            assertEquals(List.of(), traces.stream().map(LogRecord::getMessage).toList(), "gRPC logged stack traces");
            // 31 bad calls well within one interval: the first is logged at once, the rest wait for the next line.
            List<String> lines = clientErrorLines.list.stream().map(ILoggingEvent::getFormattedMessage).toList();
            assertEquals(1, lines.size(), lines.toString());
            assertTrue(lines.getFirst().startsWith("1 client error {INVALID_ARGUMENT=1}, latest INVALID_ARGUMENT: "
                    + "cmoe.v1.Generation/Generate: request is not a valid cmoe.v1.GenerateRequest"), lines.getFirst());
            // ... and good calls still work.
            List<GenerateResponse> ok = new ArrayList<>();
            tiny.blocking().generate(GenerateRequest.newBuilder().setText("The jury").setMaxNewTokens(3)
                    .setIgnoreEos(true).build()).forEachRemaining(ok::add);
            assertEquals(3, ok.stream().filter(GenerateResponse::hasChunk).count());
        }
    }

    @Test
    void aStepThatThrowsWithoutAMessageNeverShowsTheClientAClassName() throws Exception {
        try (TinyServer tiny = TinyServer.start(SchedulerConfig.defaults(), Throwing::new, null)) {
            Responses r = Responses.eager();
            tiny.async().generate(GenerateRequest.newBuilder().setText("The jury").setMaxNewTokens(3).build(), r);
            ExecutionException e = assertThrows(ExecutionException.class, () -> r.await(WAIT));
            Status s = Status.fromThrowable(e.getCause());
            assertEquals(Status.Code.INTERNAL, s.getCode());
            assertEquals("model step failed: internal error", s.getDescription());
        }
    }

    @Test
    void aKvCacheThatCannotBeAllocatedFailsThatRequestOnlyWithInternal() throws Exception {
        try (TinyServer tiny = TinyServer.start(SchedulerConfig.defaults(), r -> new KvCacheFailingRunner(r, 64), null)) {
            Responses big = Responses.eager();
            tiny.async().generate(GenerateRequest.newBuilder().setText("The jury").setMaxNewTokens(100).build(), big);
            ExecutionException e = assertThrows(ExecutionException.class, () -> big.await(WAIT));
            Status s = Status.fromThrowable(e.getCause());
            assertEquals(Status.Code.INTERNAL, s.getCode());
            assertEquals("could not allocate the KV cache: no memory for a cache of more than 64 tokens",
                    s.getDescription());
            List<GenerateResponse> small = new ArrayList<>();
            tiny.blocking().generate(GenerateRequest.newBuilder().setText("The jury").setMaxNewTokens(3)
                    .setIgnoreEos(true).build()).forEachRemaining(small::add);
            assertEquals(3, small.stream().filter(GenerateResponse::hasChunk).count());
            tiny.awaitIdle();
        }
    }

    @Test
    void aMessageFarPastThePromptLimitIsRefusedByTheTransportBeforeItIsBuffered() throws Exception {
        assertEquals(GrpcServer.MIN_INBOUND_BYTES, GrpcServer.maxInboundBytes(4096));
        assertEquals(2 * 1_000_000 + 65_536, GrpcServer.maxInboundBytes(1_000_000));
        try (TinyServer tiny = TinyServer.startNetty(SchedulerConfig.defaults())) {
            byte[] huge = GenerateRequest.newBuilder().setText("jury ".repeat(400_000)).build().toByteArray();
            Status s = rawCall(tiny, huge);
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, s.getCode(), s.toString());
            assertTrue(s.getDescription().contains("exceeds maximum size " + GrpcServer.MIN_INBOUND_BYTES),
                    s.getDescription());
            // one byte under the cap still reaches the validator, which names the prompt limit
            byte[] under = GenerateRequest.newBuilder().setText("j".repeat(GrpcServer.MIN_INBOUND_BYTES - 16)).build()
                    .toByteArray();
            Status v = rawCall(tiny, under);
            assertEquals(Status.Code.INVALID_ARGUMENT, v.getCode(), v.toString());
            assertTrue(v.getDescription().contains("over the limit of " + TinyServer.maxPromptBytes() + " bytes"),
                    v.getDescription());
        }
    }

    @Test
    void scrubRemovesQualifiedAndSimpleClassNames() {
        assertEquals("boom", EdgeGuard.scrub("java.lang.IllegalStateException: boom"));
        assertEquals("step failed: internal error", EdgeGuard.scrub("step failed: NullPointerException"));
        assertEquals("a: internal error at b", EdgeGuard.scrub("a: org.x.Y$InnerError at b"));
        assertEquals("no class names here", EdgeGuard.scrub("no class names here"));
        assertEquals("internal error", EdgeGuard.scrub("java.lang.OutOfMemoryError: "));
        assertEquals("Error and Exception as words stay", EdgeGuard.scrub("Error and Exception as words stay"));
    }

    private static ServerReflectionResponse listServices(TinyServer tiny, String token) throws Exception {
        CompletableFuture<ServerReflectionResponse> got = new CompletableFuture<>();
        ServerReflectionGrpc.ServerReflectionStub stub = ServerReflectionGrpc.newStub(tiny.channel);
        if (token != null) {
            Metadata h = new Metadata();
            h.put(BearerTokenInterceptor.AUTHORIZATION, "Bearer " + token);
            stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h));
        }
        StreamObserver<ServerReflectionRequest> requests = stub.serverReflectionInfo(new StreamObserver<>() {
            @Override
            public void onNext(ServerReflectionResponse r) {
                got.complete(r);
            }

            @Override
            public void onError(Throwable t) {
                got.completeExceptionally(t);
            }

            @Override
            public void onCompleted() {
            }
        });
        requests.onNext(ServerReflectionRequest.newBuilder().setListServices("").build());
        try {
            return got.get(30, TimeUnit.SECONDS);
        } finally {
            requests.onCompleted();
        }
    }

    private static Status.Code reflectionRefusal(TinyServer tiny, String token) {
        ExecutionException e = assertThrows(ExecutionException.class, () -> listServices(tiny, token));
        return Status.fromThrowable(e.getCause()).getCode();
    }

    @Test
    void reflectionIsOffWhenATokenIsRequiredUnlessAskedForAndThenBehindTheToken() throws Exception {
        try (TinyServer open = TinyServer.start(SchedulerConfig.defaults())) {
            assertTrue(listServices(open, null).getListServicesResponse().getServiceList().stream()
                    .anyMatch(s -> s.getName().equals("cmoe.v1.Generation")), "reflection works without a token");
        }
        try (TinyServer secured = TinyServer.start(SchedulerConfig.defaults(), r -> r, "s3cret")) {
            assertEquals(Status.Code.UNIMPLEMENTED, reflectionRefusal(secured, "s3cret"));
        }
        System.setProperty(GrpcServer.REFLECTION_PROPERTY, "true");
        try (TinyServer secured = TinyServer.start(SchedulerConfig.defaults(), r -> r, "s3cret")) {
            assertEquals(Status.Code.UNAUTHENTICATED, reflectionRefusal(secured, null));
            assertFalse(listServices(secured, "s3cret").getListServicesResponse().getServiceList().isEmpty());
        } finally {
            System.clearProperty(GrpcServer.REFLECTION_PROPERTY);
        }
    }

    /** A runner whose every step throws an exception without a message, as a bug deep inside might. */
    private record Throwing(ModelRunner delegate) implements DelegatingRunner {
        @Override
        public StepOutput run(ScheduledBatch batch) {
            throw new IllegalStateException();
        }
    }

    private static final class Bytes implements MethodDescriptor.Marshaller<byte[]> {
        @Override
        public InputStream stream(byte[] value) {
            return new ByteArrayInputStream(value);
        }

        @Override
        public byte[] parse(InputStream stream) {
            try {
                return stream.readAllBytes();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
