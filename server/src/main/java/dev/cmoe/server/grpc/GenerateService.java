package dev.cmoe.server.grpc;

import dev.cmoe.proto.v1.AbortRequest;
import dev.cmoe.proto.v1.AbortResponse;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.proto.v1.GetModelInfoRequest;
import dev.cmoe.proto.v1.ModelInfo;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.scheduler.GenerationRequest;
import dev.cmoe.server.scheduler.SchedulerActor;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * The {@code cmoe.v1.Generation} service: validates each call at the edge, then hands it to a
 * {@link StreamActor} that submits it to the {@link SchedulerActor} and streams the tokens back.
 */
public final class GenerateService extends GenerationGrpc.GenerationImplBase {
    private static final Duration ASK_TIMEOUT = Duration.ofSeconds(10);

    private final ActorSystem<?> system;
    private final ActorRef<SchedulerActor.Command> scheduler;
    private final RequestValidator validator;
    private final Supplier<ModelInfo> info;
    private final ServingGate gate;
    private final ServerMetrics metrics;
    private final AtomicLong streams = new AtomicLong();

    public GenerateService(ActorSystem<?> system, ActorRef<SchedulerActor.Command> scheduler,
                           RequestValidator validator, ModelInfo info, ServerMetrics metrics) {
        this(system, scheduler, validator, () -> info, metrics, ServingGate.opened());
    }

    /**
     * @param info what GetModelInfo answers, asked at each call (a cluster's placement changes)
     * @param gate closed: Generate answers UNAVAILABLE at once
     */
    public GenerateService(ActorSystem<?> system, ActorRef<SchedulerActor.Command> scheduler,
                           RequestValidator validator, Supplier<ModelInfo> info, ServerMetrics metrics,
                           ServingGate gate) {
        this.system = system;
        this.scheduler = scheduler;
        this.validator = validator;
        this.info = info;
        this.metrics = metrics;
        this.gate = gate;
    }

    /** The largest text prompt the validator accepts, in bytes (0: token-id prompts only). */
    public long maxPromptBytes() {
        return validator.maxPromptBytes();
    }

    @Override
    public void generate(GenerateRequest request, StreamObserver<GenerateResponse> observer) {
        String closed = gate.closedBecause();
        if (closed != null) {
            metrics.requestFinished(Status.Code.UNAVAILABLE.name());
            observer.onError(Status.UNAVAILABLE.withDescription("not serving: " + closed).asRuntimeException());
            return;
        }
        GenerationRequest r;
        try {
            r = validator.validate(request, System.nanoTime());
        } catch (StatusException e) {
            metrics.requestFinished(e.getStatus().getCode().name());
            observer.onError(e);
            return;
        }
        ServerCallStreamObserver<GenerateResponse> call = (ServerCallStreamObserver<GenerateResponse>) observer;
        ActorRef<StreamActor.Command> stream = system.systemActorOf(
                StreamActor.create(r, call, scheduler, metrics), "stream-" + streams.incrementAndGet(), Props.empty());
        // Handlers can only be installed now, during this call; Start follows so that the actor's
        // first write cannot race their installation.
        call.setOnReadyHandler(() -> stream.tell(StreamActor.ClientReady.INSTANCE));
        call.setOnCancelHandler(() -> stream.tell(StreamActor.ClientCancelled.INSTANCE));
        stream.tell(StreamActor.Start.INSTANCE);
    }

    @Override
    public void abort(AbortRequest request, StreamObserver<AbortResponse> observer) {
        if (request.getRequestId().isEmpty()) {
            observer.onError(Status.INVALID_ARGUMENT.withDescription("request_id is empty").asRuntimeException());
            return;
        }
        AskPattern.<SchedulerActor.Command, SchedulerActor.AbortReply>ask(scheduler,
                        replyTo -> new SchedulerActor.Abort(request.getRequestId(), replyTo), ASK_TIMEOUT,
                        system.scheduler())
                .whenComplete((reply, failure) -> {
                    if (failure != null) {
                        observer.onError(Status.UNAVAILABLE.withDescription("the scheduler did not answer the abort of "
                                + request.getRequestId() + " within " + ASK_TIMEOUT.toSeconds() + " s")
                                .asRuntimeException());
                    } else {
                        observer.onNext(AbortResponse.newBuilder().setFound(reply.found()).build());
                        observer.onCompleted();
                    }
                });
    }

    @Override
    public void getModelInfo(GetModelInfoRequest request, StreamObserver<ModelInfo> observer) {
        observer.onNext(info.get());
        observer.onCompleted();
    }
}
