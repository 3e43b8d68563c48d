package dev.cmoe.server.cluster;

import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.experts.placement.PlacementPolicy;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.RouterActor;
import dev.cmoe.server.moe.TransportWatch;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.apache.pekko.cluster.ClusterEvent;

/**
 * The head's placement of routed experts on the cluster's devices. It discovers expert-worker
 * devices through the receptionist, makes the first placement (the plan file's, or round-robin),
 * tells devices what to {@link ExpertWorker.Load load}, and gives every layer's router its replica
 * table. It reacts to failures — an unreachable or departed worker's devices are dropped, the
 * routers re-send their in-flight rows to surviving replicas, and experts left without a host are
 * loaded on survivors — and it rebalances on request or when the measured load is uneven, always
 * make-before-break: new replicas load, routers switch to them, routers drain the old ones, and
 * only then are the old ones unloaded.
 *
 * <p>This class is its protocol; {@link PlacementPhases} is its behaviour, one per phase: waiting
 * for the first placement, steady, and loading.
 */
public final class PlacementCoordinator {

    /** What the coordinator understands. */
    public sealed interface Command permits Rebalance, GetPlacement, Listing, Reachability, Described, LoadDone,
            RoutersUpdated, RoutersDrained, Unloaded, Removed, NodeGone, Rediscover, Settle, Tick {
    }

    /**
     * Re-places experts: onto {@code plan} when given (an operator's), else by the placement
     * policy from the loads measured since the last rebalance. Answered once the new replicas serve.
     *
     * @param trigger rpc, imbalance or a test's name, for the metrics
     */
    public record Rebalance(PlacementPlan plan, boolean dryRun, String trigger, ActorRef<RebalanceResult> replyTo)
            implements Command {
    }

    /**
     * The outcome of a {@link Rebalance}.
     *
     * @param error empty on success, else why nothing was changed
     * @param added replicas created, {@code removed} replicas retired
     * @param imbalanceBefore maximum over mean device load of the measured window before, {@code imbalanceAfter} after
     */
    public record RebalanceResult(PlacementPlan plan, int added, int removed, double imbalanceBefore,
                                  double imbalanceAfter, String error) {
    }

    /** Asks for the current {@link PlacementView}. */
    public record GetPlacement(ActorRef<PlacementView> replyTo) implements Command {
    }

    /**
     * The placement as the rest of the head (health, GetModelInfo, tests) sees it.
     *
     * @param hosted device id -> routed experts it serves
     * @param unserved experts without a live host; the head serves only when this is empty
     * @param plan where experts are meant to be over the live devices; null before every expert has one
     */
    public record PlacementView(boolean placed, Map<String, Integer> hosted, List<ExpertId> unserved, String summary,
                                PlacementPlan plan) {
        public boolean serving() {
            return placed && unserved.isEmpty();
        }
    }

    /**
     * The coordinator's knobs.
     *
     * @param plan the operator's plan file, or null for round-robin
     * @param minDevices devices to wait for before the first placement (without a plan)
     * @param settle quiet time after the last device joined before the first placement
     * @param planWait with a plan, how long to wait for its devices before placing their experts elsewhere
     * @param requiredFrameBytes devices whose nodes accept smaller frames are refused
     * @param checkInterval how often the measured load is checked for imbalance
     * @param imbalanceThreshold max/mean device load that triggers a rebalance; ≤ 0 disables it
     * @param minWindowTokens routed tokens a window needs before its imbalance is trusted
     * @param secret devices that cannot prove it are refused and their nodes downed; OPEN checks no one
     */
    public record Settings(PlacementPlan plan, PlacementPolicy policy, int minDevices, Duration settle,
                           Duration planWait, int requiredFrameBytes, Duration describeTimeout, Duration loadTimeout,
                           Duration drainTimeout, Duration checkInterval, double imbalanceThreshold,
                           long minWindowTokens, ClusterSecret secret) {
    }

    record Listing(Receptionist.Listing listing) implements Command {
    }

    record Reachability(ClusterEvent.ReachabilityEvent event) implements Command {
    }

    record Removed(ClusterEvent.MemberRemoved event) implements Command {
    }

    /** The transport watch found a node's process gone. */
    record NodeGone(TransportWatch.Gone gone) implements Command {
    }

    record Rediscover(ActorRef<ExpertWorker.Command> ref) implements Command {
    }

    record Described(ActorRef<ExpertWorker.Command> ref, String challenge,
                             ExpertWorker.Description description, Throwable failure) implements Command {
    }

    record LoadDone(long opId, ActorRef<ExpertWorker.Command> ref, List<ExpertId> asked,
                            ExpertWorker.LoadResult result, Throwable failure) implements Command {
    }

    record RoutersUpdated(long version, int layer, Throwable failure) implements Command {
    }

    record RoutersDrained(long drain, int layer, Throwable failure) implements Command {
    }

    record Unloaded(ExpertWorker.Unloaded unloaded) implements Command {
    }

    enum Settle implements Command {
        INSTANCE
    }

    enum Tick implements Command {
        INSTANCE
    }

    private PlacementCoordinator() {
    }

    /**
     * @param routers the layers' routers, index = layer
     * @param listener told every placement change (health, GetModelInfo); called on the actor's thread
     */
    public static Behavior<Command> create(Settings settings, PlacementState state,
                                           List<ActorRef<RouterActor.Command>> routers, ServerMetrics metrics,
                                           Consumer<PlacementView> listener) {
        return create(settings, state, routers, null, metrics, listener);
    }

    /** As above, attached to {@code watch}: a node whose process it finds gone loses its devices at once. */
    public static Behavior<Command> create(Settings settings, PlacementState state,
                                           List<ActorRef<RouterActor.Command>> routers,
                                           ActorRef<TransportWatch.Command> watch, ServerMetrics metrics,
                                           Consumer<PlacementView> listener) {
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers -> {
            ctx.setLoggerName(PlacementCoordinator.class);
            if (watch != null) {
                watch.tell(new TransportWatch.Attach(ctx.messageAdapter(TransportWatch.Gone.class, NodeGone::new)));
            }
            return new PlacementPhases(ctx, timers, settings, state, routers, metrics, listener).start();
        }));
    }
}
