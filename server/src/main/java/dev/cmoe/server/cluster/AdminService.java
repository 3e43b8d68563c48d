package dev.cmoe.server.cluster;

import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.proto.v1.AdminGrpc;
import dev.cmoe.proto.v1.RebalanceRequest;
import dev.cmoe.proto.v1.RebalanceResponse;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * The {@code cmoe.v1.Admin} service of a cluster head: {@code Rebalance} hands the request to the
 * {@link PlacementCoordinator} and answers when the new replicas serve. The bearer-token
 * interceptor guards it like every service; without a token it refuses to run at all.
 */
public final class AdminService extends AdminGrpc.AdminImplBase {
    private final ActorRef<PlacementCoordinator.Command> coordinator;
    private final Scheduler scheduler;
    private final Duration timeout;
    private final boolean authenticated;
    private final Supplier<String> placement;

    /**
     * @param authenticated whether the server checks a bearer token on every call
     * @param timeout how long a rebalance may take (loading new replicas) before the call fails
     * @param placement the placement in words, for the answer
     */
    public AdminService(ActorRef<PlacementCoordinator.Command> coordinator, Scheduler scheduler, Duration timeout,
                        boolean authenticated, Supplier<String> placement) {
        this.coordinator = coordinator;
        this.scheduler = scheduler;
        this.timeout = timeout;
        this.authenticated = authenticated;
        this.placement = placement;
    }

    @Override
    public void rebalance(RebalanceRequest request, StreamObserver<RebalanceResponse> observer) {
        if (!authenticated) {
            observer.onError(Status.PERMISSION_DENIED.withDescription("admin calls need the head to run with "
                    + "--auth-token-file (and the call to carry its bearer token)").asRuntimeException());
            return;
        }
        PlacementPlan plan = null;
        if (!request.getPlanJson().isEmpty()) {
            try {
                String json = StandardCharsets.UTF_8.newDecoder()
                        .decode(java.nio.ByteBuffer.wrap(request.getPlanJsonBytes().toByteArray())).toString();
                plan = PlacementPlan.fromJson(json);
            } catch (CharacterCodingException e) {
                observer.onError(Status.INVALID_ARGUMENT.withDescription("plan_json is not valid UTF-8")
                        .asRuntimeException());
                return;
            } catch (IllegalArgumentException e) {
                observer.onError(Status.INVALID_ARGUMENT.withDescription("plan_json: " + e.getMessage())
                        .asRuntimeException());
                return;
            }
        }
        PlacementPlan given = plan;
        AskPattern.<PlacementCoordinator.Command, PlacementCoordinator.RebalanceResult>ask(coordinator,
                        replyTo -> new PlacementCoordinator.Rebalance(given, request.getDryRun(), "rpc", replyTo),
                        timeout, scheduler)
                .whenComplete((r, failure) -> {
                    if (failure != null) {
                        observer.onError(Status.DEADLINE_EXCEEDED.withDescription("the rebalance did not finish within "
                                + timeout + ": " + failure.getMessage()).asRuntimeException());
                    } else if (!r.error().isEmpty()) {
                        Status s = given == null ? Status.FAILED_PRECONDITION : Status.INVALID_ARGUMENT;
                        observer.onError(s.withDescription(r.error()).asRuntimeException());
                    } else {
                        observer.onNext(RebalanceResponse.newBuilder().setPlanJson(r.plan().toJson())
                                .setReplicasAdded(r.added()).setReplicasRemoved(r.removed())
                                .setImbalanceBefore(r.imbalanceBefore()).setImbalanceAfter(r.imbalanceAfter())
                                .setPlacement(placement.get()).build());
                        observer.onCompleted();
                    }
                });
    }
}
