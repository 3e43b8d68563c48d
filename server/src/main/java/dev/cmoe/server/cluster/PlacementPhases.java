package dev.cmoe.server.cluster;

import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.experts.placement.DefaultPlacement;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.server.cluster.PlacementCoordinator.Command;
import dev.cmoe.server.cluster.PlacementCoordinator.Described;
import dev.cmoe.server.cluster.PlacementCoordinator.GetPlacement;
import dev.cmoe.server.cluster.PlacementCoordinator.Listing;
import dev.cmoe.server.cluster.PlacementCoordinator.LoadDone;
import dev.cmoe.server.cluster.PlacementCoordinator.NodeGone;
import dev.cmoe.server.cluster.PlacementCoordinator.PlacementView;
import dev.cmoe.server.cluster.PlacementCoordinator.Reachability;
import dev.cmoe.server.cluster.PlacementCoordinator.Rebalance;
import dev.cmoe.server.cluster.PlacementCoordinator.RebalanceResult;
import dev.cmoe.server.cluster.PlacementCoordinator.Rediscover;
import dev.cmoe.server.cluster.PlacementCoordinator.Removed;
import dev.cmoe.server.cluster.PlacementCoordinator.RoutersDrained;
import dev.cmoe.server.cluster.PlacementCoordinator.RoutersUpdated;
import dev.cmoe.server.cluster.PlacementCoordinator.Settle;
import dev.cmoe.server.cluster.PlacementCoordinator.Settings;
import dev.cmoe.server.cluster.PlacementCoordinator.Tick;
import dev.cmoe.server.cluster.PlacementCoordinator.Unloaded;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.RouterActor;
import dev.cmoe.server.moe.TransportWatch;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.BehaviorBuilder;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Down;
import org.apache.pekko.cluster.typed.Subscribe;

/**
 * The {@link PlacementCoordinator}'s behaviour, one per phase: {@link Waiting} for enough devices
 * before the first placement, {@link Steady} while the devices hold what is desired (rebalances
 * start here), and {@link Loading} while a load operation is out, which defers further changes
 * until it is answered. What every phase does alike — discovering and losing devices, telling the
 * routers their tables and draining retired replicas, answering views — is shared here; each
 * phase adds only the messages it treats its own way.
 */
final class PlacementPhases {
    private final ActorContext<Command> ctx;
    private final TimerScheduler<Command> timers;
    private final Settings settings;
    private final PlacementState state;
    private final List<ActorRef<RouterActor.Command>> routers; // index = layer
    private final ServerMetrics metrics;
    private final Consumer<PlacementView> listener;
    private final Address self;
    private final long startNanos = System.nanoTime();
    private final Rebalancing rebalancing; // the load measured since the last rebalance
    private final ActorRef<ExpertWorker.Unloaded> unloaded;
    private final Discovery discovery = new Discovery();
    private final RouterSync sync = new RouterSync();
    private final List<Waiter> waiters = new ArrayList<>(); // answered once the devices hold the desired placement
    private long ids; // of load operations and Unload messages

    private record Waiter(ActorRef<RebalanceResult> replyTo, RebalanceResult result) {
    }

    /** What the receptionist and the cluster said about devices. */
    private static final class Discovery {
        Set<ActorRef<ExpertWorker.Command>> listed = Set.of(); // the receptionist's last listing
        final Set<ActorRef<ExpertWorker.Command>> describing = new HashSet<>();
        final Set<Address> unreachable = new HashSet<>();
        final Set<Address> refused = new HashSet<>(); // nodes that failed the secret, until removed
    }

    /** The replica tables the routers were sent, and the drain of replicas they no longer use. */
    private static final class RouterSync {
        long version;
        final Set<Integer> unacked = new HashSet<>();   // layers whose router has not taken `version`
        long drain;
        final Set<Integer> undrained = new HashSet<>(); // layers whose router still has work on retiring replicas
        Map<String, Set<ExpertId>> draining = Map.of(); // device -> experts of that drain
    }

    PlacementPhases(ActorContext<Command> ctx, TimerScheduler<Command> timers, Settings settings,
                    PlacementState state, List<ActorRef<RouterActor.Command>> routers, ServerMetrics metrics,
                    Consumer<PlacementView> listener) {
        this.ctx = ctx;
        this.timers = timers;
        this.settings = settings;
        this.state = state;
        this.routers = List.copyOf(routers);
        this.metrics = metrics;
        this.listener = listener;
        this.self = Cluster.get(ctx.getSystem()).selfMember().address();
        this.rebalancing = new Rebalancing(metrics, state.shape().layers(), state.shape().routed());
        this.unloaded = ctx.messageAdapter(ExpertWorker.Unloaded.class, Unloaded::new);
    }

    /** Subscribes to devices and membership, and waits for the first placement. */
    Behavior<Command> start() {
        ctx.getSystem().receptionist().tell(Receptionist.subscribe(ExpertWorker.SERVICE_KEY,
                ctx.messageAdapter(Receptionist.Listing.class, Listing::new)));
        Cluster.get(ctx.getSystem()).subscriptions().tell(Subscribe.create(
                ctx.messageAdapter(ClusterEvent.ReachabilityEvent.class, Reachability::new),
                ClusterEvent.ReachabilityEvent.class));
        Cluster.get(ctx.getSystem()).subscriptions().tell(Subscribe.create(
                ctx.messageAdapter(ClusterEvent.MemberRemoved.class, Removed::new), ClusterEvent.MemberRemoved.class));
        if (settings.imbalanceThreshold() > 0) {
            timers.startTimerWithFixedDelay(Tick.INSTANCE, settings.checkInterval());
        }
        announce();
        return new Waiting().behavior();
    }

    // ---- phases ---------------------------------------------------------------------------------

    /** A phase: its receive, and how it takes a change of the desired placement and a lost device. */
    private abstract class Phase {
        private Behavior<Command> behavior;

        /** This phase's own messages, before the shared ones. */
        abstract BehaviorBuilder<Command> own(BehaviorBuilder<Command> b);

        /** The placement wants devices brought to it. */
        abstract Phase reconcile();

        /** A device left; a phase waiting on it stops waiting. */
        Phase without(ActorRef<ExpertWorker.Command> ref) {
            return this;
        }

        final Behavior<Command> behavior() {
            if (behavior == null) {
                behavior = shared(own(Behaviors.receive(Command.class)), this).build();
            }
            return behavior;
        }
    }

    /** Before the first placement: devices join; once enough are quiet ({@link Settle}), experts are placed. */
    private final class Waiting extends Phase {
        @Override
        BehaviorBuilder<Command> own(BehaviorBuilder<Command> b) {
            return b.onMessage(Settle.class, s -> next(this, onSettle(this)))
                    .onMessage(Tick.class, t -> Behaviors.same());
        }

        @Override
        Phase reconcile() {
            return state.placed() ? startLoads() : this; // only a Settle makes the first placement
        }
    }

    /** The devices hold the desired placement (or nothing can be loaded); rebalances start from here. */
    private final class Steady extends Phase {
        @Override
        BehaviorBuilder<Command> own(BehaviorBuilder<Command> b) {
            return b.onMessage(Settle.class, s -> Behaviors.same())
                    .onMessage(Tick.class, t -> onTick());
        }

        @Override
        Phase reconcile() {
            return startLoads();
        }
    }

    /**
     * A load operation is out: devices are loading experts. Changes meanwhile only mark it
     * {@code dirty}, so that one more round of loads follows it.
     */
    private final class Loading extends Phase {
        private final long op;
        private final Set<ActorRef<ExpertWorker.Command>> waiting;
        private final boolean dirty;

        Loading(long op, Set<ActorRef<ExpertWorker.Command>> waiting, boolean dirty) {
            this.op = op;
            this.waiting = Set.copyOf(waiting);
            this.dirty = dirty;
        }

        @Override
        BehaviorBuilder<Command> own(BehaviorBuilder<Command> b) {
            return b.onMessage(Settle.class, s -> Behaviors.same())
                    .onMessage(Tick.class, t -> Behaviors.same())
                    .onMessage(LoadDone.class, m -> {
                        boolean failed = applyLoad(m);
                        if (m.opId() != op) {
                            return failed && !dirty ? next(this, new Loading(op, waiting, true)) : Behaviors.same();
                        }
                        return next(this, answered(m.ref(), failed || dirty));
                    });
        }

        @Override
        Phase reconcile() {
            return dirty ? this : new Loading(op, waiting, true);
        }

        @Override
        Phase without(ActorRef<ExpertWorker.Command> ref) {
            if (!waiting.contains(ref)) {
                return this;
            }
            // no answer is coming from it; the reconcile that follows its loss publishes and re-places
            Set<ActorRef<ExpertWorker.Command>> left = new HashSet<>(waiting);
            left.remove(ref);
            return left.isEmpty() ? new Steady() : new Loading(op, left, dirty);
        }

        private Phase answered(ActorRef<ExpertWorker.Command> ref, boolean again) {
            Set<ActorRef<ExpertWorker.Command>> left = new HashSet<>(waiting);
            left.remove(ref);
            if (!left.isEmpty()) {
                return new Loading(op, left, again);
            }
            publish(Set.of());
            if (again) {
                return startLoads();
            }
            answerWaiters();
            return new Steady();
        }
    }

    private static Behavior<Command> next(Phase current, Phase next) {
        return next == current ? Behaviors.same() : next.behavior();
    }

    /** The messages every phase handles alike; {@code phase} takes what changes the placement. */
    private BehaviorBuilder<Command> shared(BehaviorBuilder<Command> b, Phase phase) {
        return b.onMessage(Listing.class, m -> next(phase, onListing(phase, m)))
                .onMessage(Reachability.class, m -> next(phase, onReachability(phase, m)))
                .onMessage(NodeGone.class, m -> next(phase, onNodeGone(phase, m.gone())))
                .onMessage(Removed.class, m -> {
                    Address a = m.event().member().address();
                    discovery.refused.remove(a);
                    // a restarted worker may come back at the same host:port, as a new member
                    if (discovery.unreachable.remove(a)) {
                        discovery.listed.forEach(this::discover);
                    }
                    return Behaviors.same();
                })
                .onMessage(Described.class, m -> next(phase, onDescribed(phase, m)))
                .onMessage(Rediscover.class, m -> {
                    if (discovery.listed.contains(m.ref())) {
                        discover(m.ref());
                    }
                    return Behaviors.same();
                })
                .onMessage(LoadDone.class, m -> {
                    applyLoad(m); // a late answer of an operation given up on (its device was lost)
                    return Behaviors.same();
                })
                .onMessage(RoutersUpdated.class, this::onRoutersUpdated)
                .onMessage(RoutersDrained.class, this::onRoutersDrained)
                .onMessage(Rebalance.class, r -> next(phase, onRebalance(phase, r)))
                .onMessage(GetPlacement.class, g -> {
                    g.replyTo().tell(view());
                    return Behaviors.same();
                })
                .onMessage(Unloaded.class, u -> {
                    ctx.getLog().info("device {} retired experts; it hosts {}", u.unloaded().deviceId(),
                            u.unloaded().hosted().size());
                    return Behaviors.same();
                });
    }

    // ---- discovery and failure ------------------------------------------------------------------

    private Phase onListing(Phase phase, Listing m) {
        discovery.listed = m.listing().getServiceInstances(ExpertWorker.SERVICE_KEY);
        Phase p = phase;
        for (PlacementState.Device d : List.copyOf(state.devices().values())) {
            if (!discovery.listed.contains(d.ref)) {
                p = lose(p, d, "left the cluster");
            }
        }
        discovery.listed.forEach(this::discover);
        return p;
    }

    private Phase onReachability(Phase phase, Reachability m) {
        Address address = m.event().member().address();
        Phase p = phase;
        if (m.event() instanceof ClusterEvent.UnreachableMember) {
            discovery.unreachable.add(address);
            for (PlacementState.Device d : List.copyOf(state.devices().values())) {
                if (address(d.ref).equals(address)) {
                    p = lose(p, d, "is unreachable");
                }
            }
        } else if (m.event() instanceof ClusterEvent.ReachableMember) {
            discovery.unreachable.remove(address);
            // its devices come back empty, for the next rebalance; but a node that was downed while
            // unreachable is on its way out (a new incarnation of it may join): it gets nothing
            if (serving(m.event().member())) {
                discovery.listed.forEach(this::discover);
            }
        }
        return p;
    }

    /**
     * A node whose process is gone (its cluster port refuses connections): its devices are lost
     * now, as for an unreachable one, and it is downed, so that the failure detector's verdict is
     * not waited for.
     */
    private Phase onNodeGone(Phase phase, TransportWatch.Gone gone) {
        Address address = gone.node();
        if (address.equals(self) || discovery.unreachable.contains(address)) {
            return phase;
        }
        Phase p = phase;
        for (PlacementState.Device d : List.copyOf(state.devices().values())) {
            if (address(d.ref).equals(address)) {
                p = lose(p, d, "is gone: " + gone.reason());
            }
        }
        for (Member member : Cluster.get(ctx.getSystem()).state().getMembers()) {
            if (member.address().equals(address)) {
                discovery.unreachable.add(address); // until it is removed: a new incarnation may join
                Cluster.get(ctx.getSystem()).manager().tell(new Down(address));
            }
        }
        return p;
    }

    private void discover(ActorRef<ExpertWorker.Command> ref) {
        Address at = address(ref);
        if (state.device(ref) != null || discovery.describing.contains(ref) || discovery.unreachable.contains(at)
                || discovery.refused.contains(at)) {
            return;
        }
        discovery.describing.add(ref);
        String challenge = ClusterSecret.challenge();
        ctx.ask(ExpertWorker.Description.class, ref, settings.describeTimeout(),
                replyTo -> new ExpertWorker.Describe(challenge, replyTo),
                (d, err) -> new Described(ref, challenge, d, err));
    }

    private Phase onDescribed(Phase phase, Described m) {
        discovery.describing.remove(m.ref());
        Address at = address(m.ref());
        if (!discovery.listed.contains(m.ref()) || discovery.unreachable.contains(at)) {
            return phase;
        }
        if (m.failure() != null) {
            ctx.getLog().warn("device at {} did not describe itself: {}; asking again", m.ref().path(),
                    m.failure().toString());
            timers.startSingleTimer(m.ref(), new Rediscover(m.ref()), settings.describeTimeout());
            return phase;
        }
        ExpertWorker.Description d = m.description();
        if (!settings.secret().accepts(m.challenge(), d.deviceId(), at.toString(), d.proof())) {
            refuse(m.ref(), at, d.deviceId());
            return phase;
        }
        String refused = d.shape().equals(state.shape()) ? null
                : "it serves " + d.shape() + ", the head's model is " + state.shape() + " (start it with the same --model)";
        if (refused == null && d.maxFrameBytes() < settings.requiredFrameBytes()) {
            refused = "its node accepts frames of " + d.maxFrameBytes() + " bytes, the head's batches need "
                    + settings.requiredFrameBytes() + " (start it with --max-batch-tokens as large as the head's)";
        }
        if (refused == null && !at.equals(self) && !memberServing(at)) {
            // downed, leaving, or not yet Up as the head sees it: asked again while it is listed
            ctx.getLog().info("device {} at {} is not an Up member; asking again", d.deviceId(), at);
            timers.startSingleTimer(m.ref(), new Rediscover(m.ref()), settings.describeTimeout());
            return phase;
        }
        Phase p = phase;
        PlacementState.Device holder = refused == null ? state.device(d.deviceId()) : null;
        if (holder != null && !address(holder.ref).equals(at)
                && (discovery.unreachable.contains(address(holder.ref)) || !memberServing(address(holder.ref)))) {
            // the same worker back as a new incarnation before its old one was removed
            p = lose(p, holder, "was replaced by a new incarnation at " + at);
            holder = null;
        }
        if (holder != null) {
            refused = "the id is taken by the live device at " + holder.ref.path()
                    + " (give each worker its own --name)";
        }
        if (refused != null) {
            ctx.getLog().error("refusing device {}: {}", d.deviceId(), refused);
            return p;
        }
        if (!d.hosted().isEmpty()) {
            // it served before (the head restarted, or the worker was unreachable for a while):
            // start it empty so that what it hosts is what this head placed
            m.ref().tell(new ExpertWorker.Unload(++ids, d.hosted(), unloaded));
        }
        state.add(new PlacementState.Device(d.deviceId(), m.ref(), d.memoryBytes(), d.compute()));
        ctx.getLog().info("device {} joined ({} devices; memory budget {} bytes)", d.deviceId(),
                state.devices().size(), d.memoryBytes() == 0 ? "unlimited" : d.memoryBytes());
        Phase next = p;
        if (!state.placed()) {
            timers.startSingleTimer(Settle.INSTANCE, settings.settle());
        } else if (!state.unserved().isEmpty()) {
            next = p.reconcile(); // experts waiting for any host get this one
        }
        announce();
        return next;
    }

    /** A member without the cluster's secret: it gets nothing, and (unless it is this node) leaves the cluster. */
    private void refuse(ActorRef<ExpertWorker.Command> ref, Address at, String deviceId) {
        ctx.getLog().error("refusing device {} at {}: it did not prove the cluster's secret (a node "
                + "started without --cluster-secret-file, or with another one); downing that node", deviceId, at);
        if (!at.equals(self)) {
            discovery.refused.add(at);
            // told first, so that it stops for good instead of rejoining once downed
            ref.tell(new ExpertWorker.Refused("device " + deviceId + " did not prove the cluster's secret (start it"
                    + " with the head's --cluster-secret-file)"));
            Cluster.get(ctx.getSystem()).manager().tell(new Down(at));
        }
    }

    private Phase lose(Phase phase, PlacementState.Device d, String why) {
        state.remove(d.id);
        ctx.getLog().warn("device {} {}: its experts are re-sent to replicas or re-placed", d.id, why);
        Phase next = phase.without(d.ref);
        if (state.placed()) {
            metrics.rebalanced("failover");
            publish(Set.of(d.compute));
            next = next.reconcile();
        }
        announce();
        return next;
    }

    private Phase onSettle(Waiting waiting) {
        if (state.placed() || state.devices().isEmpty()) {
            return waiting;
        }
        PlacementPlan plan = settings.plan();
        if (plan != null) {
            boolean all = plan.devices().stream().allMatch(d -> state.device(d.id()) != null);
            boolean waited = System.nanoTime() - startNanos > settings.planWait().toNanos();
            if (!all && !waited) {
                timers.startSingleTimer(Settle.INSTANCE, settings.settle());
                return waiting;
            }
            if (!all) {
                ctx.getLog().warn("plan devices {} did not join within {}: their experts go elsewhere",
                        plan.devices().stream().map(PlacementPlan.Device::id).filter(id -> state.device(id) == null)
                                .toList(), settings.planWait());
            }
            state.desire(plan);
        } else {
            if (state.devices().size() < settings.minDevices()) {
                return waiting; // the next device to join re-arms the timer
            }
            try {
                state.desire(DefaultPlacement.roundRobin(state.shape().layers(), state.shape().routed(),
                        state.liveDevices(), state.shape().expertBytes()));
            } catch (IllegalStateException e) {
                ctx.getLog().error("cannot place the experts yet: {}", e.getMessage());
                return waiting;
            }
        }
        ctx.getLog().info("first placement over {} devices", state.devices().size());
        return startLoads();
    }

    // ---- loading, publishing, retiring ----------------------------------------------------------

    /** Brings the devices to the desired placement: loads what is missing, else publishes. */
    private Phase startLoads() {
        List<ExpertId> nowhere = state.assignHomeless();
        if (!nowhere.isEmpty()) {
            ctx.getLog().error("experts {} fit on no live device; the head is NOT_SERVING until capacity joins",
                    nowhere.size() > 8 ? nowhere.subList(0, 8) + "…" : nowhere);
        }
        Map<String, List<ExpertId>> loads = state.missingLoads();
        if (loads.isEmpty()) {
            publish(Set.of());
            answerWaiters();
            return new Steady();
        }
        long op = ++ids;
        Set<ActorRef<ExpertWorker.Command>> devices = new HashSet<>();
        loads.forEach((device, experts) -> {
            PlacementState.Device d = state.device(device);
            devices.add(d.ref);
            ctx.ask(ExpertWorker.LoadResult.class, d.ref, settings.loadTimeout().plusSeconds(5),
                    replyTo -> new ExpertWorker.Load(op, experts, replyTo),
                    (r, err) -> new LoadDone(op, d.ref, experts, r, err));
        });
        return new Loading(op, devices, false);
    }

    /** Records what a device loaded; whether some of it failed (those experts are no longer desired there). */
    private boolean applyLoad(LoadDone m) {
        PlacementState.Device d = state.device(m.ref());
        if (d == null) {
            return false;
        }
        if (m.result() != null) {
            d.loaded.putAll(m.result().ready());
        }
        if (m.result() != null && m.result().ok()) {
            return false;
        }
        List<ExpertId> failed = m.asked().stream()
                .filter(id -> m.result() == null || !m.result().ready().containsKey(id)).toList();
        ctx.getLog().warn("device {} did not load {}: {}", d.id, failed,
                m.result() != null ? m.result().failure() : m.failure().toString());
        state.undesire(d.id, failed);
        return true;
    }

    /** Sends every router its layer's table; {@code lost} devices' in-flight rows are re-sent. */
    private void publish(Set<ActorRef<DeviceCompute.Command>> lost) {
        long v = ++sync.version;
        sync.unacked.clear();
        for (int l = 0; l < routers.size(); l++) {
            int layer = l;
            sync.unacked.add(layer);
            ctx.ask(RouterActor.Updated.class, routers.get(l), settings.describeTimeout(),
                    replyTo -> new RouterActor.UpdateReplicas(state.table(layer), lost, replyTo),
                    (u, err) -> new RoutersUpdated(v, layer, err));
        }
        announce();
    }

    /** Once every router uses the newest tables, the replicas they no longer use are drained. */
    private Behavior<Command> onRoutersUpdated(RoutersUpdated m) {
        if (m.version() != sync.version) {
            return Behaviors.same(); // superseded; the newer tables' turn comes
        }
        if (m.failure() != null) {
            ctx.getLog().warn("router of layer {} did not take tables {}: {}", m.layer(), sync.version,
                    m.failure().toString());
            return Behaviors.same();
        }
        sync.unacked.remove(m.layer());
        Map<String, Set<ExpertId>> extras = state.extras();
        if (!sync.unacked.isEmpty() || extras.isEmpty()) {
            return Behaviors.same();
        }
        Set<ActorRef<ExpertActor.Command>> refs = new HashSet<>();
        extras.forEach((device, experts) -> experts.forEach(id -> refs.add(state.device(device).loaded.get(id))));
        long n = ++sync.drain;
        sync.draining = extras;
        sync.undrained.clear();
        for (int l = 0; l < routers.size(); l++) {
            int layer = l;
            sync.undrained.add(layer);
            ctx.ask(RouterActor.Drained.class, routers.get(l), settings.drainTimeout(),
                    replyTo -> new RouterActor.Drain(refs, replyTo), (d, err) -> new RoutersDrained(n, layer, err));
        }
        return Behaviors.same();
    }

    /** The old replicas have no work left: unload those still unused by the current tables. */
    private Behavior<Command> onRoutersDrained(RoutersDrained m) {
        if (m.drain() != sync.drain) {
            return Behaviors.same();
        }
        if (m.failure() != null) {
            ctx.getLog().warn("router of layer {} did not drain retiring replicas: {}; they stay loaded",
                    m.layer(), m.failure().toString());
            return Behaviors.same();
        }
        sync.undrained.remove(m.layer());
        if (!sync.undrained.isEmpty()) {
            return Behaviors.same();
        }
        Map<String, Set<ExpertId>> stillExtra = state.extras();
        sync.draining.forEach((device, experts) -> {
            PlacementState.Device d = state.device(device);
            if (d == null) {
                return;
            }
            List<ExpertId> retire = experts.stream()
                    .filter(id -> stillExtra.getOrDefault(device, Set.of()).contains(id)).toList();
            if (!retire.isEmpty()) {
                retire.forEach(d.loaded::remove);
                d.ref.tell(new ExpertWorker.Unload(++ids, retire, unloaded));
            }
        });
        sync.draining = Map.of();
        announce();
        return Behaviors.same();
    }

    // ---- rebalancing ----------------------------------------------------------------------------

    private Phase onRebalance(Phase phase, Rebalance r) {
        double[][] load = rebalancing.windowLoad();
        PlacementPlan current = state.current(load);
        if (current == null) {
            r.replyTo().tell(Rebalancing.failed(state.devices().isEmpty() ? "no expert-worker device has joined"
                    : "the experts are not placed yet (waiting for devices)"));
            return phase;
        }
        RebalanceResult result = Rebalancing.propose(state, current, r.plan(), settings.policy(), load);
        if (!result.error().isEmpty() || r.dryRun()) {
            r.replyTo().tell(result);
            return phase;
        }
        ctx.getLog().info("rebalance ({}): {} replicas added, {} retired; imbalance {} -> {}", r.trigger(),
                result.added(), result.removed(), String.format("%.3f", result.imbalanceBefore()),
                String.format("%.3f", result.imbalanceAfter()));
        metrics.rebalanced(r.trigger());
        rebalancing.restartWindow();
        state.desire(result.plan());
        waiters.add(new Waiter(r.replyTo(), result));
        return phase.reconcile();
    }

    private Behavior<Command> onTick() {
        if (!state.placed() || !waiters.isEmpty()) {
            return Behaviors.same();
        }
        double imbalance = rebalancing.imbalanceToAct(state.current(rebalancing.windowLoad()),
                settings.imbalanceThreshold(), settings.minWindowTokens());
        if (!Double.isNaN(imbalance)) {
            ctx.getLog().info("measured imbalance {} exceeds {}: rebalancing", String.format("%.3f", imbalance),
                    settings.imbalanceThreshold());
            ctx.getSelf().tell(new Rebalance(null, false, "imbalance", ctx.getSystem().ignoreRef()));
        }
        return Behaviors.same();
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

    /** Whether the cluster's member at {@code at} is Up (or WeaklyUp): one that may be given experts. */
    private boolean memberServing(Address at) {
        for (Member member : Cluster.get(ctx.getSystem()).state().getMembers()) {
            if (member.address().equals(at)) {
                return serving(member);
            }
        }
        return false;
    }

    private static boolean serving(Member member) {
        return member.status() == MemberStatus.up() || member.status() == MemberStatus.weaklyUp();
    }

    private Address address(ActorRef<?> ref) {
        Address a = ref.path().address();
        return a.hasGlobalScope() ? a : self;
    }
}
