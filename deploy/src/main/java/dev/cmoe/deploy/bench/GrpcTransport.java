package dev.cmoe.deploy.bench;

import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GenerationGrpc;
import io.grpc.Channel;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/** The load generator's requests as {@code cmoe.v1.Generation/Generate} streaming calls. */
public final class GrpcTransport implements Transport {
    private final GenerationGrpc.GenerationStub stub;

    public GrpcTransport(Channel channel) {
        this.stub = GenerationGrpc.newStub(channel);
    }

    @Override
    public Transport.Call start(long index, LoadRunner.Issue issue, LongSupplier clock, Duration timeout,
                                Consumer<RequestResult> done) {
        Call call = new Call(index, issue, clock, done);
        call.start(stub.withDeadlineAfter(timeout.toNanos(), TimeUnit.NANOSECONDS));
        return call;
    }

    @Override
    public String describe() {
        return "gRPC cmoe.v1.Generation/Generate";
    }

    /** One streaming call's observer: records token arrival times, cancels on purpose when told to. */
    private static final class Call implements ClientResponseObserver<GenerateRequest, GenerateResponse>,
            Transport.Call {
        private final long index;
        private final LoadRunner.Issue issue;
        private final LongSupplier clock;
        private final java.util.function.Consumer<RequestResult> done;
        private final long start;
        private long[] times = new long[16];
        private int[] ids = new int[16];
        private int count;
        private int promptTokens;
        private String finishReason = "";
        private String inStreamError; // code name of an in-stream error
        private String message = "";
        private boolean cancelled;
        private boolean ended;
        private ClientCallStreamObserver<GenerateRequest> requestStream;

        Call(long index, LoadRunner.Issue issue, LongSupplier clock, java.util.function.Consumer<RequestResult> done) {
            this.index = index;
            this.issue = issue;
            this.clock = clock;
            this.done = done;
            this.start = clock.getAsLong();
        }

        void start(GenerationGrpc.GenerationStub stub) {
            stub.generate(issue.request(), this);
        }

        @Override
        public void beforeStart(ClientCallStreamObserver<GenerateRequest> requestStream) {
            this.requestStream = requestStream;
        }

        @Override
        public synchronized void onNext(GenerateResponse r) {
            switch (r.getKindCase()) {
                case CHUNK -> {
                    long t = clock.getAsLong();
                    for (int i = 0; i < r.getChunk().getTokenIdsCount(); i++) {
                        if (count == times.length) {
                            times = Arrays.copyOf(times, count * 2);
                            ids = Arrays.copyOf(ids, count * 2);
                        }
                        ids[count] = r.getChunk().getTokenIds(i);
                        times[count++] = t;
                    }
                    promptTokens = r.getChunk().getPromptTokens();
                    if (issue.cancelAfterTokens() > 0 && count >= issue.cancelAfterTokens() && !cancelled) {
                        cancelled = true;
                        requestStream.cancel("benchmark cancels after " + count + " tokens", null);
                    }
                }
                case ERROR -> {
                    inStreamError = Status.fromCodeValue(r.getError().getCode()).getCode().name();
                    message = r.getError().getMessage();
                }
                case FINAL -> {
                    finishReason = r.getFinal().getFinishReason().name();
                    promptTokens = r.getFinal().getUsage().getPromptTokens();
                }
                default -> {
                }
            }
        }

        @Override
        public void onError(Throwable t) {
            Status s = Status.fromThrowable(t);
            end(s.getCode().name(), s.getDescription() == null ? "" : s.getDescription());
        }

        @Override
        public void onCompleted() {
            end(inStreamError != null ? inStreamError : "OK", message);
        }

        /** The call outlived its deadline and the drain: cancel it and report it as hung. */
        @Override
        public void abandon() {
            if (requestStream != null) {
                requestStream.cancel("abandoned by the benchmark after its deadline", null);
            }
            end("HUNG", "no end after the deadline");
        }

        private synchronized void end(String status, String why) {
            if (ended) {
                return;
            }
            ended = true;
            done.accept(new RequestResult(index, issue.phase(), start, clock.getAsLong(), Arrays.copyOf(times, count),
                    Arrays.copyOf(ids, count), promptTokens, status, finishReason, cancelled, why));
        }
    }

}
