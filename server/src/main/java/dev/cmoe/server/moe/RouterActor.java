package dev.cmoe.server.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.server.metrics.ServerMetrics;
import io.micrometer.core.instrument.Counter;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * The router of one MoE layer: decides each token's experts with exactly the in-process code
 * ({@link MoeFeedForward#route}), shares each selected expert's rows among its replicas by the
 * outstanding work of their devices (rows sent and not yet answered; {@link RowSplit}: a hot
 * expert's rows are split over its replicas), and hands the step to an idle {@link StepGather}
 * (spawned only when every one is busy), which sends each device one message with all of its rows
 * of the step, computes the shared expert meanwhile and combines as {@link MoeFeedForward#combine}
 * does.
 * Spawn it on {@link #DISPATCHER}.
 *
 * <p>The placement coordinator replaces the replica table ({@link UpdateReplicas}); the router
 * passes every new table to its steps in flight, which move the rows of a lost device to a
 * surviving replica. {@link Drain} answers once given replicas have no work left, so a replica is
 * retired only after the last step using it has its answer (make-before-break).
 */
public final class RouterActor extends AbstractBehavior<RouterActor.Command> {
    /** The dispatcher (server reference.conf) routers and their gatherers run on: they do tensor work. */
    public static final String DISPATCHER = "cmoe.router-dispatcher";

    /** What a router understands. */
    public sealed interface Command permits Route, UpdateReplicas, Drain, WorkDone, WorkMoved, GatherIdle,
            GatherStopped {
    }

    /**
     * The FFN input of one whole step.
     *
     * @param x (tokens, hidden) row-major: every token of the step's batch
     * @param withShared whether the answer includes the shared expert; the model's own block
     *     sends false and computes it on its thread while the routed experts work
     */
    public record Route(long stepId, float[] x, int tokens, boolean withShared, ActorRef<Reply> replyTo)
            implements Command {
        /** The whole layer: routed experts and the shared one. */
        public Route(long stepId, float[] x, int tokens, ActorRef<Reply> replyTo) {
            this(stepId, x, tokens, true, replyTo);
        }
    }

    /**
     * A new replica table for this layer.
     *
     * @param lost the computes of devices that are gone: steps in flight re-send their rows from
     *     these. Computes, not device ids: a worker that rejoins as a new incarnation keeps its id,
     *     and its new replicas must not be taken for the lost ones.
     */
    public record UpdateReplicas(LayerReplicas replicas, Set<ActorRef<DeviceCompute.Command>> lost,
                                 ActorRef<Updated> replyTo)
            implements Command {
    }

    /** The router uses the new table for every later step. */
    public record Updated(int layer) {
    }

    /** Answers {@link Drained} once none of {@code replicas} has rows outstanding from this router. */
    public record Drain(Set<ActorRef<ExpertActor.Command>> replicas, ActorRef<Drained> replyTo) implements Command {
    }

    /** No step of this layer waits on the drained replicas any more. */
    public record Drained(int layer) {
    }

    /** A step's device answered: replica → the rows of it answered (from {@link StepGather}). */
    record WorkDone(ActorRef<StepGather.Command> gather, Map<ActorRef<ExpertActor.Command>, Integer> rows)
            implements Command {
    }

    /** A step moved {@code rows} rows from a lost replica to another (to null: none is left yet). */
    record WorkMoved(ActorRef<StepGather.Command> gather, ActorRef<ExpertActor.Command> from,
                     ActorRef<ExpertActor.Command> to, int rows) implements Command {
    }

    /** A step has its answer; its gather takes the next one (from {@link StepGather}). */
    record GatherIdle(ActorRef<StepGather.Command> gather) implements Command {
    }

    private record GatherStopped(ActorRef<StepGather.Command> gather) implements Command {
    }

    /** The layer's answer to {@link Route}. */
    public sealed interface Reply permits Routed, Failed {
        long stepId();
    }

    /** @param output (tokens, hidden) row-major: the MoE layer's output, without the shared expert if not asked for */
    public record Routed(long stepId, float[] output) implements Reply {
    }

    /**
     * The step could not be computed.
     *
     * @param unavailable true when an expert had no live replica within the bound (capacity is
     *     gone, answered UNAVAILABLE), false for a fault or a timeout (INTERNAL)
     */
    public record Failed(long stepId, String reason, boolean unavailable) implements Reply {
    }

    /**
     * How long steps wait.
     *
     * @param expert for all of a step's experts to answer
     * @param unavailable for an expert without any live replica to get one
     * @param maxMessageBytes the cluster's frame size (0 in-process): larger expert messages fail at once
     * @param stallAfter how long a step waits on a remote device before it reports the device's
     *     node to {@code watch}
     * @param watch tells a dead node's process from a slow one ({@link TransportWatch}); null: none
     */
    public record Limits(Duration expert, Duration unavailable, int maxMessageBytes, Duration stallAfter,
                         ActorRef<TransportWatch.Command> watch) {
        /** Without a transport watch. */
        public Limits(Duration expert, Duration unavailable, int maxMessageBytes) {
            this(expert, unavailable, maxMessageBytes, expert, null);
        }

        public static Limits local(Duration expert) {
            return new Limits(expert, expert, 0);
        }
    }

    /** A step a gather is computing: who asked, and per replica its rows not yet answered. */
    private record InFlight(Route ask, Map<ActorRef<ExpertActor.Command>, Integer> work) {
    }

    private record PendingDrain(Set<ActorRef<ExpertActor.Command>> replicas, ActorRef<Drained> replyTo) {
    }

    private final int layer;
    private final int hidden;
    private final DType dtype;
    private final MoeFeedForward ffn;
    private final Limits limits;
    private final ServerMetrics metrics;
    private final Counter[] tokens; // per routed expert: tokens routed to it
    private final Map<String, Counter> deviceTokens = new HashMap<>(); // device -> rows sent to it
    private final Map<ActorRef<ExpertActor.Command>, Integer> outstanding = new HashMap<>(); // replica -> rows
    private final Map<ActorRef<StepGather.Command>, InFlight> inFlight = new HashMap<>(); // gather -> its step
    private final List<PendingDrain> drains = new ArrayList<>();
    private final ArrayDeque<ActorRef<StepGather.Command>> idle = new ArrayDeque<>(); // gathers between steps
    private final NDManager manager = NDManager.newBaseManager();
    private LayerReplicas replicas;
    private long picks; // rotates ties between equally idle replicas
    private long steps; // numbers the steps handed to gathers: their batch tags

    private RouterActor(ActorContext<Command> context, int layer, int hidden, DType dtype, MoeFeedForward ffn,
                        LayerReplicas replicas, Limits limits, ServerMetrics metrics) {
        super(context);
        if (replicas.routed() != ffn.config().routed()) {
            throw new IllegalArgumentException("layer " + layer + " has " + ffn.config().routed()
                    + " routed experts, got a replica table of " + replicas.routed());
        }
        this.layer = layer;
        this.hidden = hidden;
        this.dtype = dtype;
        this.ffn = ffn;
        this.replicas = replicas;
        this.limits = limits;
        this.metrics = metrics;
        this.tokens = new Counter[replicas.routed()];
        for (int j = 0; j < tokens.length; j++) {
            tokens[j] = metrics.expertTokens(layer, j);
        }
    }

    /**
     * Routes layer {@code layer} with {@code ffn}'s router, shared expert and combine; the routed
     * experts are those of {@code replicas}, their rows sent in {@code dtype} (the experts' own).
     * {@code ffn} stays the caller's to close.
     */
    public static Behavior<Command> create(int layer, int hidden, DType dtype, MoeFeedForward ffn,
                                           LayerReplicas replicas, Limits limits, ServerMetrics metrics) {
        // Resume on a bug rather than restart: a restart would forget the current replica table
        // and the outstanding work; a stopped router would fail every later step by timeout.
        return Behaviors.supervise(Behaviors.<Command>setup(ctx ->
                        new RouterActor(ctx, layer, hidden, dtype, ffn, replicas, limits, metrics)))
                .onFailure(SupervisorStrategy.resume());
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Route.class, this::onRoute)
                .onMessage(UpdateReplicas.class, this::onUpdateReplicas)
                .onMessage(Drain.class, this::onDrain)
                .onMessage(WorkDone.class, this::onWorkDone)
                .onMessage(WorkMoved.class, this::onWorkMoved)
                .onMessage(GatherIdle.class, this::onGatherIdle)
                .onMessage(GatherStopped.class, this::onGatherStopped)
                .onSignal(PostStop.class, s -> release())
                .build();
    }

    private Behavior<Command> onRoute(Route r) {
        if (r.tokens() < 1 || r.x().length != (long) r.tokens() * hidden) {
            r.replyTo().tell(new Failed(r.stepId(), "layer " + layer + ": expected (" + r.tokens() + ", " + hidden
                    + ") hidden states, got " + r.x().length + " values", false));
            return this;
        }
        Routing routing;
        try (NDManager step = manager.newSubManager()) {
            NDArray x = step.create(r.x(), new Shape(r.tokens(), hidden));
            routing = ffn.route(x);
        } catch (RuntimeException e) {
            r.replyTo().tell(new Failed(r.stepId(), "layer " + layer + ": routing failed: " + e, false));
            return this;
        }
        List<StepGather.Part> parts = new ArrayList<>();
        Map<ActorRef<ExpertActor.Command>, Integer> work = new HashMap<>();
        Map<String, Integer> deviceWork = deviceWork();
        // experts with a single replica have no choice and go first; then the replicated ones, most
        // rows first (longest processing time first), are water-filled around them, a hot expert's
        // rows split over its replicas, so that the layer's busiest device, which the step waits
        // for, carries as little as possible
        Integer[] order = new Integer[routing.nRouted()];
        for (int j = 0; j < order.length; j++) {
            order[j] = j;
        }
        Arrays.sort(order, Comparator.<Integer>comparingInt(j -> replicas.of(j).size() > 1 ? 1 : 0)
                .thenComparingInt(j -> -routing.rows(j).length));
        for (int j : order) {
            int n = routing.rows(j).length;
            if (n == 0) {
                continue;
            }
            tokens[j].increment(n);
            List<RowSplit.Share> shares = RowSplit.split(n, replicas.of(j), deviceWork, outstanding,
                    (int) (picks++ % Math.max(1, replicas.of(j).size())));
            if (shares.isEmpty()) {
                parts.add(new StepGather.Part(j, 0, n, null)); // no live replica yet: the step waits for one
                continue;
            }
            int from = 0;
            for (RowSplit.Share share : shares) {
                Replica replica = share.replica();
                parts.add(new StepGather.Part(j, from, from + share.rows(), replica));
                from += share.rows();
                outstanding.merge(replica.ref(), share.rows(), Integer::sum);
                work.merge(replica.ref(), share.rows(), Integer::sum);
                deviceWork.merge(replica.device(), share.rows(), Integer::sum);
                deviceTokens.computeIfAbsent(replica.device(), this::deviceCounter).increment(share.rows());
            }
        }
        ActorRef<StepGather.Command> gather = idle.poll();
        if (gather == null) {
            gather = getContext().spawnAnonymous(StepGather.create(layer, hidden, dtype, ffn, limits,
                    getContext().getSelf()), DispatcherSelector.fromConfig(DISPATCHER));
            getContext().watchWith(gather, new GatherStopped(gather));
        }
        steps = steps % (1L << 46) + 1;
        gather.tell(new StepGather.Begin(steps, routing, r, parts, replicas));
        inFlight.put(gather, new InFlight(r, work));
        return this;
    }

    /** Rows sent and not yet answered, per device, over the replicas of the current table. */
    private Map<String, Integer> deviceWork() {
        Map<String, Integer> w = new HashMap<>();
        for (List<Replica> expert : replicas.experts()) {
            for (Replica r : expert) {
                Integer rows = outstanding.get(r.ref());
                if (rows != null) {
                    w.merge(r.device(), rows, Integer::sum);
                }
            }
        }
        return w;
    }

    private Behavior<Command> onUpdateReplicas(UpdateReplicas u) {
        if (u.replicas().routed() != replicas.routed()) {
            getContext().getLog().error("layer {}: ignoring a replica table of {} experts (the layer has {})", layer,
                    u.replicas().routed(), replicas.routed());
        } else {
            replicas = u.replicas();
            for (ActorRef<StepGather.Command> g : inFlight.keySet()) {
                g.tell(new StepGather.TableChanged(replicas, u.lost()));
            }
        }
        u.replyTo().tell(new Updated(layer));
        return this;
    }

    private Behavior<Command> onDrain(Drain d) {
        drains.add(new PendingDrain(Set.copyOf(d.replicas()), d.replyTo()));
        checkDrains();
        return this;
    }

    private Behavior<Command> onWorkDone(WorkDone w) {
        w.rows().forEach((replica, rows) -> settle(w.gather(), replica, rows));
        checkDrains();
        return this;
    }

    private Counter deviceCounter(String device) {
        return metrics.deviceTokens(layer, device);
    }

    private Behavior<Command> onWorkMoved(WorkMoved m) {
        settle(m.gather(), m.from(), m.rows());
        InFlight step = inFlight.get(m.gather());
        if (m.to() != null && step != null) {
            outstanding.merge(m.to(), m.rows(), Integer::sum);
            step.work().merge(m.to(), m.rows(), Integer::sum);
            replicas.experts().stream().flatMap(List::stream).filter(r -> r.ref().equals(m.to())).findFirst()
                    .ifPresent(r -> deviceTokens.computeIfAbsent(r.device(), this::deviceCounter)
                            .increment(m.rows()));
        }
        checkDrains();
        return this;
    }

    private Behavior<Command> onGatherIdle(GatherIdle g) {
        ended(g.gather());
        idle.push(g.gather());
        return this;
    }

    private Behavior<Command> onGatherStopped(GatherStopped g) {
        InFlight step = ended(g.gather());
        if (step != null) { // it stopped on a bug mid-step: answer for it rather than leave the asker to time out
            Route r = step.ask();
            r.replyTo().tell(new Failed(r.stepId(), "layer " + layer + ", step " + r.stepId()
                    + ": its gather stopped unexpectedly (see the log)", false));
        }
        idle.remove(g.gather());
        return this;
    }

    /**
     * Whatever {@code gather}'s step did not report (it failed, or timed out) is no longer outstanding.
     *
     * @return the step it was computing, or null
     */
    private InFlight ended(ActorRef<StepGather.Command> gather) {
        InFlight step = inFlight.remove(gather);
        if (step != null) {
            step.work().forEach((ref, rows) -> outstanding.computeIfPresent(ref,
                    (k, v) -> v - rows > 0 ? v - rows : null));
        }
        checkDrains();
        return step;
    }

    private void settle(ActorRef<StepGather.Command> gather, ActorRef<ExpertActor.Command> replica, int rows) {
        InFlight step = inFlight.get(gather);
        Map<ActorRef<ExpertActor.Command>, Integer> work = step == null ? null : step.work();
        if (work == null || replica == null || !work.containsKey(replica)) {
            return;
        }
        int left = work.get(replica) - rows;
        if (left > 0) {
            work.put(replica, left);
        } else {
            work.remove(replica);
        }
        outstanding.computeIfPresent(replica, (k, v) -> v - rows > 0 ? v - rows : null);
    }

    private void checkDrains() {
        for (Iterator<PendingDrain> it = drains.iterator(); it.hasNext(); ) {
            PendingDrain d = it.next();
            if (d.replicas().stream().noneMatch(outstanding::containsKey)) {
                d.replyTo().tell(new Drained(layer));
                it.remove();
            }
        }
    }

    private Behavior<Command> release() {
        manager.close();
        return this;
    }
}
