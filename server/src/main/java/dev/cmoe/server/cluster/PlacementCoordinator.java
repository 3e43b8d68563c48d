package dev.cmoe.server.cluster;

import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.experts.placement.DefaultPlacement;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.experts.placement.PlacementPolicy;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.RouterActor;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Down;
import org.apache.pekko.cluster.typed.Subscribe;

/**
 * The head's placement of routed experts on the cluster's devices. It discovers expert-worker
 * devices through the receptionist, makes the first placement (the plan file's, or round-robin),
 * tells devices what to {@link ExpertWorker.Load load}, and gives every layer's router its replica
 * table. It reacts to failures — an unreachable or departed worker's devices are dropped, the
 * routers re-send their in-flight rows to surviving replicas, and experts left without a host are
 * loaded on survivors — and it rebalances on request or when the measured load is uneven, always
 * make-before-break: new replicas load, routers switch to them, routers drain the old ones, and
 * only then are the old ones unloaded.
 */
public final class PlacementCoordinator extends AbstractBehavior<PlacementCoordinator.Command> {

    /** What the coordinator understands. */
    public sealed interface Command permits Rebalance, GetPlacement, Listing, Reachability, Described, LoadDone,
            RoutersUpdated, RoutersDrained, Unloaded, Removed, Rediscover, Settle, Tick {
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

    private record Listing(Receptionist.Listing listing) implements Command {
    }

    private record Reachability(ClusterEvent.ReachabilityEvent event) implements Command {
    }

    private record Removed(ClusterEvent.MemberRemoved event) implements Command {
    }

    private record Rediscover(ActorRef<ExpertWorker.Command> ref) implements Command {
    }

    private record Described(ActorRef<ExpertWorker.Command> ref, String challenge,
                             ExpertWorker.Description description, Throwable failure) implements Command {
    }

    private record LoadDone(long opId, ActorRef<ExpertWorker.Command> ref, List<ExpertId> asked,
                            ExpertWorker.LoadResult result, Throwable failure) implements Command {
    }

    private record RoutersUpdated(long version, int layer, Throwable failure) implements Command {
    }

    private record RoutersDrained(long drain, int layer, Throwable failure) implements Command {
    }

    private record Unloaded(ExpertWorker.Unloaded unloaded) implements Command {
    }

    private enum Settle implements Command {
        INSTANCE
    }

    private enum Tick implements Command {
        INSTANCE
    }

    private final Settings settings;
    private final PlacementState state;
    private final List<ActorRef<RouterActor.Command>> routers; // index = layer
    private final ServerMetrics metrics;
    private final Consumer<PlacementView> listener;
    private final TimerScheduler<Command> timers;
    private final Address self;
    private Set<ActorRef<ExpertWorker.Command>> listed = Set.of();          // the receptionist's last listing
    private final Set<ActorRef<ExpertWorker.Command>> describing = new HashSet<>();
    private final Set<Address> unreachable = new HashSet<>();
    private final Set<Address> refused = new HashSet<>(); // nodes that failed the secret, until removed
    private final List<RebalanceResultWaiter> waiters = new ArrayList<>(); // answered when loads are done
    private final long startNanos = System.nanoTime();
    private final Rebalancing rebalancing; // the load measured since the last rebalance
    private boolean loading;          // a load operation is in flight
    private final Set<ActorRef<ExpertWorker.Command>> opDevices = new HashSet<>(); // devices it waits for
    private long opId;
    private long version;             // of the replica tables sent to the routers
    private final Set<Integer> unacked = new HashSet<>();   // layers whose router has not taken `version`
    private long drain;               // the drain in progress: old replicas waiting for their last answers
    private final Set<Integer> undrained = new HashSet<>(); // layers whose router still has work on them
    private Map<String, Set<ExpertId>> draining = Map.of(); // device -> experts of that drain
    private boolean dirty;
    private long unloads;             // ids of Unload messages (apart from load operations)
    private final ActorRef<ExpertWorker.Unloaded> unloaded;

    private record RebalanceResultWaiter(ActorRef<RebalanceResult> replyTo, RebalanceResult result) {
    }

    private PlacementCoordinator(ActorContext<Command> context, TimerScheduler<Command> timers, Settings settings,
                                 PlacementState state, List<ActorRef<RouterActor.Command>> routers,
                                 ServerMetrics metrics, Consumer<PlacementView> listener) {
        super(context);
        this.settings = settings;
        this.state = state;
        this.routers = List.copyOf(routers);
        this.metrics = metrics;
        this.listener = listener;
        this.timers = timers;
        this.self = Cluster.get(context.getSystem()).selfMember().address();
        this.rebalancing = new Rebalancing(metrics, state.shape().layers(), state.shape().routed());
        this.unloaded = context.messageAdapter(ExpertWorker.Unloaded.class, Unloaded::new);
        context.getSystem().receptionist().tell(Receptionist.subscribe(ExpertWorker.SERVICE_KEY,
                context.messageAdapter(Receptionist.Listing.class, Listing::new)));
        Cluster.get(context.getSystem()).subscriptions().tell(Subscribe.create(
                context.messageAdapter(ClusterEvent.ReachabilityEvent.class, Reachability::new),
                ClusterEvent.ReachabilityEvent.class));
        Cluster.get(context.getSystem()).subscriptions().tell(Subscribe.create(
                context.messageAdapter(ClusterEvent.MemberRemoved.class, Removed::new),
                ClusterEvent.MemberRemoved.class));
        if (settings.imbalanceThreshold() > 0) {
            timers.startTimerWithFixedDelay(Tick.INSTANCE, settings.checkInterval());
        }
        announce();
    }

    /**
     * @param routers the layers' routers, index = layer
     * @param listener told every placement change (health, GetModelInfo); called on the actor's thread
     */
    public static Behavior<Command> create(Settings settings, PlacementState state,
                                           List<ActorRef<RouterActor.Command>> routers, ServerMetrics metrics,
                                           Consumer<PlacementView> listener) {
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers ->
                new PlacementCoordinator(ctx, timers, settings, state, routers, metrics, listener)));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Listing.class, this::onListing)
                .onMessage(Reachability.class, this::onReachability)
                .onMessage(Removed.class, m -> {
                    // a restarted worker may come back at the same host:port, as a new member
                    refused.remove(m.event().member().address());
                    if (unreachable.remove(m.event().member().address())) {
                        listed.forEach(this::discover);
                    }
                    return this;
                })
                .onMessage(Described.class, this::onDescribed)
                .onMessage(Rediscover.class, m -> {
                    if (listed.contains(m.ref())) {
                        discover(m.ref());
                    }
                    return this;
                })
                .onMessage(Settle.class, s -> onSettle())
                .onMessage(LoadDone.class, this::onLoadDone)
                .onMessage(RoutersUpdated.class, this::onRoutersUpdated)
                .onMessage(RoutersDrained.class, this::onRoutersDrained)
                .onMessage(Rebalance.class, this::onRebalance)
                .onMessage(GetPlacement.class, g -> {
                    g.replyTo().tell(view());
                    return this;
                })
                .onMessage(Tick.class, t -> onTick())
                .onMessage(Unloaded.class, u -> {
                    getContext().getLog().info("device {} retired experts; it hosts {}", u.unloaded().deviceId(),
                            u.unloaded().hosted().size());
                    return this;
                })
                .build();
    }

    // ---- discovery and failure ------------------------------------------------------------------

    private Behavior<Command> onListing(Listing m) {
        listed = m.listing().getServiceInstances(ExpertWorker.SERVICE_KEY);
        for (PlacementState.Device d : List.copyOf(state.devices().values())) {
            if (!listed.contains(d.ref)) {
                lose(d, "left the cluster");
            }
        }
        listed.forEach(this::discover);
        return this;
    }

    private Behavior<Command> onReachability(Reachability m) {
        Address address = m.event().member().address();
        if (m.event() instanceof ClusterEvent.UnreachableMember) {
            unreachable.add(address);
            for (PlacementState.Device d : List.copyOf(state.devices().values())) {
                if (address(d.ref).equals(address)) {
                    lose(d, "is unreachable");
                }
            }
        } else if (m.event() instanceof ClusterEvent.ReachableMember) {
            unreachable.remove(address);
            listed.forEach(this::discover); // its devices come back empty, for the next rebalance
        }
        return this;
    }

    private void discover(ActorRef<ExpertWorker.Command> ref) {
        if (state.device(ref) != null || describing.contains(ref) || unreachable.contains(address(ref))
                || refused.contains(address(ref))) {
            return;
        }
        describing.add(ref);
        String challenge = ClusterSecret.challenge();
        getContext().ask(ExpertWorker.Description.class, ref, settings.describeTimeout(),
                replyTo -> new ExpertWorker.Describe(challenge, replyTo), (d, err) -> new Described(ref, challenge, d, err));
    }

    private Behavior<Command> onDescribed(Described m) {
        describing.remove(m.ref());
        if (!listed.contains(m.ref()) || unreachable.contains(address(m.ref()))) {
            return this;
        }
        if (m.failure() != null) {
            getContext().getLog().warn("device at {} did not describe itself: {}; asking again", m.ref().path(),
                    m.failure().toString());
            timers.startSingleTimer(m.ref(), new Rediscover(m.ref()), settings.describeTimeout());
            return this;
        }
        ExpertWorker.Description d = m.description();
        Address at = address(m.ref());
        if (!settings.secret().accepts(m.challenge(), d.deviceId(), at.toString(), d.proof())) {
            refuse(at, d.deviceId());
            return this;
        }
        String refused = d.shape().equals(state.shape()) ? null
                : "it serves " + d.shape() + ", the head's model is " + state.shape() + " (start it with the same --model)";
        if (refused == null && d.maxFrameBytes() < settings.requiredFrameBytes()) {
            refused = "its node accepts frames of " + d.maxFrameBytes() + " bytes, the head's batches need "
                    + settings.requiredFrameBytes() + " (start it with --max-batch-tokens as large as the head's)";
        }
        if (refused == null && state.device(d.deviceId()) != null) {
            refused = "the id is taken by the live device at " + state.device(d.deviceId()).ref.path()
                    + " (give each worker its own --name)";
        }
        if (refused != null) {
            getContext().getLog().error("refusing device {}: {}", d.deviceId(), refused);
            return this;
        }
        if (!d.hosted().isEmpty()) {
            // it served before (the head restarted, or the worker was unreachable for a while):
            // start it empty so that what it hosts is what this head placed
            m.ref().tell(new ExpertWorker.Unload(++unloads, d.hosted(), unloaded));
        }
        state.add(new PlacementState.Device(d.deviceId(), m.ref(), d.memoryBytes()));
        getContext().getLog().info("device {} joined ({} devices; memory budget {} bytes)", d.deviceId(),
                state.devices().size(), d.memoryBytes() == 0 ? "unlimited" : d.memoryBytes());
        if (!state.placed()) {
            timers.startSingleTimer(Settle.INSTANCE, settings.settle());
        } else if (!state.unserved().isEmpty()) {
            reconcile(); // experts waiting for any host get this one
        }
        announce();
        return this;
    }

    /** A member without the cluster's secret: it gets nothing, and (unless it is this node) leaves the cluster. */
    private void refuse(Address at, String deviceId) {
        getContext().getLog().error("refusing device {} at {}: it did not prove the cluster's secret (a node "
                + "started without --cluster-secret-file, or with another one); downing that node", deviceId, at);
        if (!at.equals(self)) {
            refused.add(at);
            Cluster.get(getContext().getSystem()).manager().tell(new Down(at));
        }
    }

    private void lose(PlacementState.Device d, String why) {
        state.remove(d.id);
        getContext().getLog().warn("device {} {}: its experts are re-sent to replicas or re-placed", d.id, why);
        if (opDevices.remove(d.ref) && opDevices.isEmpty()) {
            loading = false;
        }
        if (state.placed()) {
            metrics.rebalanced("failover");
            publish(Set.of(d.id));
            reconcile();
        }
        announce();
    }

    private Behavior<Command> onSettle() {
        if (state.placed() || state.devices().isEmpty()) {
            return this;
        }
        PlacementPlan plan = settings.plan();
        if (plan != null) {
            boolean all = plan.devices().stream().allMatch(d -> state.device(d.id()) != null);
            boolean waited = System.nanoTime() - startNanos > settings.planWait().toNanos();
            if (!all && !waited) {
                timers.startSingleTimer(Settle.INSTANCE, settings.settle());
                return this;
            }
            if (!all) {
                getContext().getLog().warn("plan devices {} did not join within {}: their experts go elsewhere",
                        plan.devices().stream().map(PlacementPlan.Device::id).filter(id -> state.device(id) == null)
                                .toList(), settings.planWait());
            }
            state.desire(plan);
        } else {
            if (state.devices().size() < settings.minDevices()) {
                return this; // the next device to join re-arms the timer
            }
            try {
                state.desire(DefaultPlacement.roundRobin(state.shape().layers(), state.shape().routed(),
                        state.liveDevices(), state.shape().expertBytes()));
            } catch (IllegalStateException e) {
                getContext().getLog().error("cannot place the experts yet: {}", e.getMessage());
                return this;
            }
        }
        getContext().getLog().info("first placement over {} devices", state.devices().size());
        reconcile();
        return this;
    }

    // ---- loading, publishing, retiring ----------------------------------------------------------

    /** Brings the devices to the desired placement: loads what is missing, then publishes. */
    private void reconcile() {
        if (loading) {
            dirty = true;
            return;
        }
        dirty = false;
        List<ExpertId> nowhere = state.assignHomeless();
        if (!nowhere.isEmpty()) {
            getContext().getLog().error("experts {} fit on no live device; the head is NOT_SERVING until capacity "
                    + "joins", nowhere.size() > 8 ? nowhere.subList(0, 8) + "…" : nowhere);
        }
        Map<String, List<ExpertId>> loads = state.missingLoads();
        if (loads.isEmpty()) {
            publish(Set.of());
            answerWaiters();
            return;
        }
        long op = ++opId;
        loading = true;
        opDevices.clear();
        loads.forEach((device, ids) -> {
            PlacementState.Device d = state.device(device);
            opDevices.add(d.ref);
            getContext().ask(ExpertWorker.LoadResult.class, d.ref, settings.loadTimeout().plusSeconds(5),
                    replyTo -> new ExpertWorker.Load(op, ids, replyTo), (r, err) -> new LoadDone(op, d.ref, ids, r, err));
        });
    }

    private Behavior<Command> onLoadDone(LoadDone m) {
        PlacementState.Device d = state.device(m.ref());
        if (d != null) {
            if (m.result() != null) {
                d.loaded.putAll(m.result().ready());
            }
            if (m.result() == null || !m.result().ok()) {
                List<ExpertId> failed = m.asked().stream()
                        .filter(id -> m.result() == null || !m.result().ready().containsKey(id)).toList();
                getContext().getLog().warn("device {} did not load {}: {}", d.id, failed,
                        m.result() != null ? m.result().failure() : m.failure().toString());
                state.undesire(d.id, failed);
                dirty = true;
            }
        }
        if (m.opId() != opId || !loading) {
            return this; // a late answer of an operation given up on (its device was lost)
        }
        opDevices.remove(m.ref());
        if (opDevices.isEmpty()) {
            loading = false;
            publish(Set.of());
            if (dirty) {
                reconcile();
            } else {
                answerWaiters();
            }
        }
        return this;
    }

    /** Sends every router its layer's table; {@code lost} devices' in-flight rows are re-sent. */
    private void publish(Set<String> lost) {
        long v = ++version;
        unacked.clear();
        for (int l = 0; l < routers.size(); l++) {
            int layer = l;
            unacked.add(layer);
            getContext().ask(RouterActor.Updated.class, routers.get(l), settings.describeTimeout(),
                    replyTo -> new RouterActor.UpdateReplicas(state.table(layer), lost, replyTo),
                    (u, err) -> new RoutersUpdated(v, layer, err));
        }
        announce();
    }

    /** Once every router uses the newest tables, the replicas they no longer use are drained. */
    private Behavior<Command> onRoutersUpdated(RoutersUpdated m) {
        if (m.version() != version) {
            return this; // superseded; the newer tables' turn comes
        }
        if (m.failure() != null) {
            getContext().getLog().warn("router of layer {} did not take tables {}: {}", m.layer(), version,
                    m.failure().toString());
            return this;
        }
        unacked.remove(m.layer());
        Map<String, Set<ExpertId>> extras = state.extras();
        if (!unacked.isEmpty() || extras.isEmpty()) {
            return this;
        }
        Set<ActorRef<ExpertActor.Command>> refs = new HashSet<>();
        extras.forEach((device, ids) -> ids.forEach(id -> refs.add(state.device(device).loaded.get(id))));
        long n = ++drain;
        draining = extras;
        undrained.clear();
        for (int l = 0; l < routers.size(); l++) {
            int layer = l;
            undrained.add(layer);
            getContext().ask(RouterActor.Drained.class, routers.get(l), settings.drainTimeout(),
                    replyTo -> new RouterActor.Drain(refs, replyTo), (d, err) -> new RoutersDrained(n, layer, err));
        }
        return this;
    }

    /** The old replicas have no work left: unload those still unused by the current tables. */
    private Behavior<Command> onRoutersDrained(RoutersDrained m) {
        if (m.drain() != drain) {
            return this;
        }
        if (m.failure() != null) {
            getContext().getLog().warn("router of layer {} did not drain retiring replicas: {}; they stay loaded",
                    m.layer(), m.failure().toString());
            return this;
        }
        undrained.remove(m.layer());
        if (!undrained.isEmpty()) {
            return this;
        }
        Map<String, Set<ExpertId>> stillExtra = state.extras();
        draining.forEach((device, ids) -> {
            PlacementState.Device d = state.device(device);
            if (d == null) {
                return;
            }
            List<ExpertId> retire = ids.stream().filter(id -> stillExtra.getOrDefault(device, Set.of()).contains(id))
                    .toList();
            if (!retire.isEmpty()) {
                retire.forEach(d.loaded::remove);
                d.ref.tell(new ExpertWorker.Unload(++unloads, retire, unloaded));
            }
        });
        draining = Map.of();
        announce();
        return this;
    }

    // ---- rebalancing ----------------------------------------------------------------------------

    private Behavior<Command> onRebalance(Rebalance r) {
        double[][] load = rebalancing.windowLoad();
        PlacementPlan current = state.current(load);
        if (current == null) {
            r.replyTo().tell(Rebalancing.failed(state.devices().isEmpty() ? "no expert-worker device has joined"
                    : "the experts are not placed yet (waiting for devices)"));
            return this;
        }
        RebalanceResult result = Rebalancing.propose(state, current, r.plan(), settings.policy(), load);
        if (!result.error().isEmpty() || r.dryRun()) {
            r.replyTo().tell(result);
            return this;
        }
        getContext().getLog().info("rebalance ({}): {} replicas added, {} retired; imbalance {} -> {}", r.trigger(),
                result.added(), result.removed(), String.format("%.3f", result.imbalanceBefore()),
                String.format("%.3f", result.imbalanceAfter()));
        metrics.rebalanced(r.trigger());
        rebalancing.restartWindow();
        state.desire(result.plan());
        waiters.add(new RebalanceResultWaiter(r.replyTo(), result));
        reconcile();
        return this;
    }

    private Behavior<Command> onTick() {
        if (loading || !state.placed() || !waiters.isEmpty()) {
            return this;
        }
        double imbalance = rebalancing.imbalanceToAct(state.current(rebalancing.windowLoad()),
                settings.imbalanceThreshold(), settings.minWindowTokens());
        if (!Double.isNaN(imbalance)) {
            getContext().getLog().info("measured imbalance {} exceeds {}: rebalancing", String.format("%.3f", imbalance),
                    settings.imbalanceThreshold());
            getContext().getSelf().tell(new Rebalance(null, false, "imbalance", getContext().getSystem().ignoreRef()));
        }
        return this;
    }

    private void answerWaiters() {
        waiters.forEach(w -> w.replyTo().tell(w.result()));
        waiters.clear();
    }

    // ---- views ----------------------------------------------------------------------------------

    private PlacementView view() {
        Map<String, Integer> hosted = state.hostedCounts();
        List<ExpertId> unserved = state.unserved();
        String summary = "cluster: " + hosted.size() + " expert-worker device(s)"
                + (hosted.isEmpty() ? "" : " " + hosted) + " host " + state.shape() + "; "
                + (!state.placed() ? "waiting for devices before the first placement"
                : unserved.isEmpty() ? "every expert has a live host"
                : unserved.size() + " expert(s) without a live host");
        return new PlacementView(state.placed(), hosted, unserved, summary, state.current(rebalancing.windowLoad()));
    }

    private void announce() {
        PlacementView v = view();
        metrics.deviceExperts(v.hosted());
        metrics.unplacedExperts(v.unserved().size());
        listener.accept(v);
    }

    private Address address(ActorRef<?> ref) {
        Address a = ref.path().address();
        return a.hasGlobalScope() ? a : self;
    }
}
