package dev.cmoe.server.grpc;

import dev.cmoe.proto.v1.Chunk;
import dev.cmoe.proto.v1.StreamError;
import dev.cmoe.proto.v1.Final;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.TokenLogprob;
import dev.cmoe.proto.v1.TopLogprob;
import dev.cmoe.proto.v1.Usage;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.scheduler.GenerationRequest;
import dev.cmoe.server.scheduler.SchedulerActor;
import dev.cmoe.server.scheduler.StepOutput;
import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import java.util.ArrayDeque;
import java.util.Deque;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * One Generate call's bridge from the scheduler to the gRPC stream, with gRPC flow control. It
 * writes only while the transport {@code isReady()}, keeping the rest in an outbox, and gives the
 * scheduler one credit back per chunk written; the scheduler parks a sequence with no credit, so
 * the outbox never holds more than the stream window and a slow client stalls only itself.
 * Being an actor also serialises every write to the observer, which is not thread-safe.
 */
public final class StreamActor extends AbstractBehavior<StreamActor.Command> {

    /** Messages the stream accepts. */
    public sealed interface Command {
    }

    /** Submits the request; sent once the call's handlers are installed, so no write races them. */
    public enum Start implements Command { INSTANCE }

    /** The transport can take more (setOnReadyHandler). */
    public enum ClientReady implements Command { INSTANCE }

    /** The call was cancelled by the client or its deadline (setOnCancelHandler). */
    public enum ClientCancelled implements Command { INSTANCE }

    private record FromScheduler(SchedulerActor.Event event) implements Command {
    }

    private final GenerationRequest request;
    private final ServerCallStreamObserver<GenerateResponse> call;
    private final ActorRef<SchedulerActor.Command> scheduler;
    private final ServerMetrics metrics;
    private final ActorRef<SchedulerActor.Event> events;
    private final Deque<GenerateResponse> outbox = new ArrayDeque<>();
    private boolean sentAny;
    private boolean failedInStream;
    private Status.Code failedCode = Status.Code.INTERNAL;
    private String endStatus; // the call's status for metrics, set once the Final is in the outbox

    public static Behavior<Command> create(GenerationRequest request, ServerCallStreamObserver<GenerateResponse> call,
                                           ActorRef<SchedulerActor.Command> scheduler, ServerMetrics metrics) {
        return Behaviors.setup(ctx -> new StreamActor(ctx, request, call, scheduler, metrics));
    }

    private StreamActor(ActorContext<Command> context, GenerationRequest request,
                        ServerCallStreamObserver<GenerateResponse> call, ActorRef<SchedulerActor.Command> scheduler,
                        ServerMetrics metrics) {
        super(context);
        this.request = request;
        this.call = call;
        this.scheduler = scheduler;
        this.metrics = metrics;
        this.events = context.messageAdapter(SchedulerActor.Event.class, FromScheduler::new);
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Start.class, m -> onStart())
                .onMessage(ClientReady.class, m -> drain())
                .onMessage(ClientCancelled.class, m -> onCancelled())
                .onMessage(FromScheduler.class, this::onEvent)
                .build();
    }

    private Behavior<Command> onStart() {
        scheduler.tell(new SchedulerActor.Submit(request, events));
        return this;
    }

    private Behavior<Command> onCancelled() {
        scheduler.tell(new SchedulerActor.Cancel(request.requestId()));
        metrics.requestFinished(Status.Code.CANCELLED.name());
        return Behaviors.stopped();
    }

    private Behavior<Command> onEvent(FromScheduler m) {
        switch (m.event()) {
            case SchedulerActor.Rejected r -> {
                Status status = r.reason() == SchedulerActor.Rejection.DUPLICATE_ID ? Status.ALREADY_EXISTS
                        : Status.RESOURCE_EXHAUSTED;
                return fail(status.withDescription(EdgeGuard.scrub(r.message())));
            }
            case SchedulerActor.Tokens t -> outbox.addLast(response().setChunk(chunk(t)).build());
            case SchedulerActor.Failed f -> {
                Status.Code code = f.unavailable() ? Status.Code.UNAVAILABLE : Status.Code.INTERNAL;
                if (!sentAny && outbox.isEmpty()) {
                    return fail(Status.fromCode(code).withDescription(EdgeGuard.scrub(f.message())));
                }
                // Streaming began: the error travels in-stream, and the Finished(ERROR) that follows ends it.
                outbox.addLast(response().setError(StreamError.newBuilder().setCode(code.value())
                        .setMessage(EdgeGuard.scrub(f.message()))).build());
                failedInStream = true;
                failedCode = code;
            }
            case SchedulerActor.Finished f -> {
                outbox.addLast(response().setFinal(finalMessage(f)).build());
                endStatus = failedInStream ? failedCode.name() : switch (f.reason()) {
                    case ABORTED -> Status.Code.ABORTED.name();
                    case ERROR -> Status.Code.INTERNAL.name();
                    default -> Status.Code.OK.name();
                };
            }
        }
        return drain();
    }

    /** Writes what the transport takes now, returns the credits, and completes after the last message. */
    private Behavior<Command> drain() {
        if (call.isCancelled()) {
            return this; // the cancel handler's message follows
        }
        int written = 0;
        while (!outbox.isEmpty() && call.isReady()) {
            GenerateResponse r = outbox.removeFirst();
            call.onNext(r);
            sentAny = true;
            if (r.hasChunk()) {
                written++;
            }
        }
        if (written > 0) {
            scheduler.tell(new SchedulerActor.Credit(request.requestId(), written));
        }
        if (outbox.isEmpty() && endStatus != null) {
            call.onCompleted();
            metrics.requestFinished(endStatus);
            return Behaviors.stopped();
        }
        return this;
    }

    private Behavior<Command> fail(Status status) {
        call.onError(status.asRuntimeException());
        metrics.requestFinished(status.getCode().name());
        return Behaviors.stopped();
    }

    private GenerateResponse.Builder response() {
        return GenerateResponse.newBuilder().setRequestId(request.requestId());
    }

    private static Chunk chunk(SchedulerActor.Tokens t) {
        Chunk.Builder c = Chunk.newBuilder().setText(t.text()).setPromptTokens(t.promptTokens())
                .setCompletionTokens(t.completionTokens());
        for (int i = 0; i < t.tokenIds().length; i++) {
            c.addTokenIds(t.tokenIds()[i]);
            if (i < t.logprobs().size()) {
                StepOutput.Logprobs lp = t.logprobs().get(i);
                TokenLogprob.Builder b = TokenLogprob.newBuilder().setTokenId(t.tokenIds()[i]).setLogprob(lp.logprob());
                for (int k = 0; k < lp.topIds().length; k++) {
                    b.addTop(TopLogprob.newBuilder().setTokenId(lp.topIds()[k]).setLogprob(lp.topLogprobs()[k]));
                }
                c.addLogprobs(b);
            }
        }
        return c.build();
    }

    private static Final finalMessage(SchedulerActor.Finished f) {
        return Final.newBuilder()
                .setFinishReason(dev.cmoe.proto.v1.FinishReason.valueOf(f.reason().name()))
                .setUsage(Usage.newBuilder().setPromptTokens(f.promptTokens()).setCompletionTokens(f.completionTokens()))
                .setTimeToFirstTokenMs(f.timeToFirstTokenNanos() / 1e6)
                .setQueueTimeMs(f.queueNanos() / 1e6)
                .build();
    }
}
