package dev.cmoe.server.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.cluster.ClusterSettings;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * The scatter–gather of one routed step of one layer: one {@code Compute} per part (a selected
 * expert's rows, all at once and never per token, or a slice of them when the router split a hot
 * expert over its replicas) to the replica its router chose, the shared expert
 * computed concurrently, an expected reply count, and timeouts that answer
 * {@link RouterActor.Failed} instead of hanging. When the router reports a lost device, the rows
 * sent there are sent again to a surviving replica (the expert is deterministic, so the step's
 * result is the same); an expert left without any replica fails the step as unavailable after
 * {@link RouterActor.Limits#unavailable()}. It answers exactly once and stops; late or duplicate
 * replies are ignored.
 */
final class StepGather extends AbstractBehavior<StepGather.Command> {
    private static final int PART_BITS = 16;
    private static final long PART_MASK = (1L << PART_BITS) - 1;

    sealed interface Command permits ExpertReply, SharedDone, TableChanged, TimedOut, Homeless {
    }

    /**
     * Rows {@code [from, to)} of expert {@code expert}'s rows of the step ({@link Routing#rows}),
     * computed by {@code replica} (null: none is live yet).
     */
    record Part(int expert, int from, int to, Replica replica) {
        int rows() {
            return to - from;
        }
    }

    /** The router's new replica table, with the devices that were lost. */
    record TableChanged(LayerReplicas replicas, Set<String> lostDevices) implements Command {
    }

    private record ExpertReply(ExpertActor.Reply reply) implements Command {
    }

    /** @param output (tokens, hidden) row-major, or null with {@code failure} */
    private record SharedDone(float[] output, Throwable failure) implements Command {
    }

    private enum TimedOut implements Command {
        INSTANCE
    }

    private enum Homeless implements Command {
        INSTANCE
    }

    private final int layer;
    private final int hidden;
    private final MoeFeedForward ffn;
    private final Routing routing;
    private final RouterActor.Route route;
    private final RouterActor.Limits limits;
    private final ActorRef<RouterActor.Command> router;
    private final TimerScheduler<Command> timers;
    private final ActorRef<ExpertActor.Reply> replies;
    private final Part[] parts;
    private final float[][] inputs;           // per part: its rows (rows, hidden), kept for re-sends
    private final float[][] outputs;          // per routed expert: (rows, hidden) row-major, filled part by part
    private final Replica[] sentTo;           // per part: the replica computing it, null while homeless
    private final TreeSet<Integer> waiting = new TreeSet<>(); // parts yet to answer
    private final Set<String> lost = new HashSet<>();         // devices lost during this step
    private final boolean hasShared;
    private LayerReplicas replicas;
    private float[] shared;                    // (tokens, hidden), null until computed (or without one)
    private int expected;                      // replies still expected: experts + shared

    private StepGather(ActorContext<Command> context, TimerScheduler<Command> timers, int layer, int hidden,
                       MoeFeedForward ffn, Routing routing, RouterActor.Route route, List<Part> parts,
                       LayerReplicas replicas, RouterActor.Limits limits, ActorRef<RouterActor.Command> router) {
        super(context);
        this.layer = layer;
        this.hidden = hidden;
        this.ffn = ffn;
        this.routing = routing;
        this.route = route;
        this.limits = limits;
        this.router = router;
        this.timers = timers;
        this.replicas = replicas;
        if (parts.size() > PART_MASK + 1) {
            throw new IllegalArgumentException(parts.size() + " parts in one step; at most " + (PART_MASK + 1));
        }
        this.parts = parts.toArray(Part[]::new);
        this.inputs = new float[this.parts.length][];
        this.outputs = new float[routing.nRouted()][];
        this.sentTo = new Replica[this.parts.length];
        this.hasShared = ffn.config().shared() > 0;
        this.replies = context.messageAdapter(ExpertActor.Reply.class, ExpertReply::new);
        for (int p = 0; p < this.parts.length; p++) {
            Part part = this.parts[p];
            int[] rows = routing.rows(part.expert());
            waiting.add(p);
            sentTo[p] = part.replica();
            inputs[p] = gather(route.x(), Arrays.copyOfRange(rows, part.from(), part.to()));
            if (outputs[part.expert()] == null) {
                outputs[part.expert()] = new float[rows.length * hidden];
            }
        }
        expected = waiting.size();
        timers.startSingleTimer(TimedOut.INSTANCE, limits.expert());
        if (hasShared) {
            expected++;
            // The shared expert runs on this dispatcher's pool while the routed experts work.
            Executor executor = context.getSystem().dispatchers()
                    .lookup(DispatcherSelector.fromConfig(RouterActor.DISPATCHER));
            CompletableFuture<float[]> done = CompletableFuture.supplyAsync(this::computeShared, executor);
            context.pipeToSelf(done, SharedDone::new);
        }
        for (int p : waiting) {
            if (sentTo[p] != null) {
                send(p);
            }
        }
        armHomeless();
    }

    static Behavior<Command> create(int layer, int hidden, MoeFeedForward ffn, Routing routing,
                                    RouterActor.Route route, List<Part> parts, LayerReplicas replicas,
                                    RouterActor.Limits limits, ActorRef<RouterActor.Command> router) {
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers ->
                new StepGather(ctx, timers, layer, hidden, ffn, routing, route, parts, replicas, limits, router)));
    }

    /**
     * The id a part's {@code Compute} carries and its answer echoes: the step in the high bits,
     * the part in the low ones, so that two parts of one expert are told apart.
     */
    private long tag(int part) {
        return route.stepId() << PART_BITS | part;
    }

    /** The step a {@code Compute}'s id belongs to. */
    static long stepOf(long tag) {
        return tag >>> PART_BITS;
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(ExpertReply.class, this::onExpertReply)
                .onMessage(SharedDone.class, this::onSharedDone)
                .onMessage(TableChanged.class, this::onTableChanged)
                .onMessage(Homeless.class, h -> homeless().isEmpty() ? this
                        : fail("experts " + homeless() + " of layer " + layer + " have no live replica after "
                        + limits.unavailable(), true))
                .onMessage(TimedOut.class, t -> fail("experts " + experts(waiting) + (hasShared && shared == null
                        ? " and the shared expert" : "") + " did not answer within " + limits.expert(), false))
                .build();
    }

    private Behavior<Command> onExpertReply(ExpertReply m) {
        switch (m.reply()) {
            case ExpertActor.Computed c -> {
                int p = part(c);
                if (p < 0 || !waiting.contains(p)) {
                    return this; // not ours, or a duplicate (an answer from a replica we moved away from)
                }
                if (c.outputs().length != parts[p].rows() * hidden) {
                    return fail("expert " + c.expert() + " answered " + c.outputs().length + " values for "
                            + parts[p].rows() + " rows × " + hidden, false);
                }
                waiting.remove(p);
                System.arraycopy(c.outputs(), 0, outputs[parts[p].expert()], parts[p].from() * hidden,
                        c.outputs().length);
                expected--;
                if (sentTo[p] != null) {
                    router.tell(new RouterActor.WorkDone(getContext().getSelf(), sentTo[p].ref(), parts[p].rows()));
                }
            }
            case ExpertActor.Failed f -> {
                int p = part(f);
                if (p < 0 || !waiting.contains(p)) {
                    return this;
                }
                return fail("expert " + f.expert() + ": " + f.reason(), false);
            }
        }
        return expected == 0 ? finish() : this;
    }

    private Behavior<Command> onSharedDone(SharedDone m) {
        if (m.failure() != null) {
            return fail("shared expert: " + m.failure(), false);
        }
        shared = m.output();
        expected--;
        return expected == 0 ? finish() : this;
    }

    /** The part {@code reply} answers, or -1 when it is not one of this step's. */
    private int part(ExpertActor.Reply reply) {
        int p = (int) (reply.stepId() & PART_MASK);
        boolean ours = stepOf(reply.stepId()) == route.stepId() && p < parts.length
                && reply.expert().layer() == layer && reply.expert().expert() == parts[p].expert();
        return ours ? p : -1;
    }

    /** Re-sends the rows of parts whose replica was lost, or that had none, to a live replica. */
    private Behavior<Command> onTableChanged(TableChanged t) {
        replicas = t.replicas();
        lost.addAll(t.lostDevices());
        for (int p : waiting) {
            Replica was = sentTo[p];
            if (was != null && !lost.contains(was.device())) {
                continue; // still alive (perhaps retiring: it answers before it is unloaded)
            }
            int j = parts[p].expert();
            Replica next = replicas.of(j).stream().filter(r -> !lost.contains(r.device())).findFirst().orElse(null);
            sentTo[p] = next;
            router.tell(new RouterActor.WorkMoved(getContext().getSelf(), was == null ? null : was.ref(),
                    next == null ? null : next.ref(), parts[p].rows()));
            if (next != null) {
                getContext().getLog().info("layer {} step {}: expert {} rows {}..{} re-sent from {} to {}", layer,
                        route.stepId(), j, parts[p].from(), parts[p].to(), was == null ? "nowhere" : was.device(),
                        next.device());
                send(p);
            }
        }
        armHomeless();
        return this;
    }

    private void send(int p) {
        Replica r = sentTo[p];
        int j = parts[p].expert();
        int n = parts[p].rows();
        if (limits.maxMessageBytes() > 0 && r.ref().path().address().hasGlobalScope()
                && ClusterSettings.tensorMessageBytes(n, hidden) > limits.maxMessageBytes()) {
            // Artery would drop it silently; say why instead of waiting for the timeout.
            getContext().getSelf().tell(new ExpertReply(new ExpertActor.Failed(tag(p),
                    new dev.cmoe.experts.ExpertId(layer, j), n + " rows × " + hidden + " floats exceed the cluster's "
                    + "frame size of " + limits.maxMessageBytes() + " bytes (size frames for --max-batch-tokens)")));
            return;
        }
        r.ref().tell(new ExpertActor.Compute(tag(p), inputs[p], n, replies));
    }

    /** The experts of parts without a live replica. */
    private TreeSet<Integer> homeless() {
        TreeSet<Integer> out = new TreeSet<>();
        for (int p : waiting) {
            if (sentTo[p] == null) {
                out.add(parts[p].expert());
            }
        }
        return out;
    }

    private TreeSet<Integer> experts(Set<Integer> partIds) {
        TreeSet<Integer> out = new TreeSet<>();
        partIds.forEach(p -> out.add(parts[p].expert()));
        return out;
    }

    private void armHomeless() {
        if (homeless().isEmpty()) {
            timers.cancel(Homeless.INSTANCE);
        } else if (!timers.isTimerActive(Homeless.INSTANCE)) {
            timers.startSingleTimer(Homeless.INSTANCE, limits.unavailable());
        }
    }

    /** Gate-weighted sum exactly as {@link MoeFeedForward#forward}: shared(x) + combine(routing, outputs). */
    private Behavior<Command> finish() {
        int tokens = route.tokens();
        float[] out;
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray[] arrays = new NDArray[outputs.length]; // experts with rows: every part has answered
            for (int j = 0; j < outputs.length; j++) {
                if (outputs[j] != null) {
                    arrays[j] = m.create(outputs[j], new Shape(outputs[j].length / hidden, hidden));
                }
            }
            NDArray routed = ffn.combine(routing, arrays);
            out = (hasShared ? m.create(shared, new Shape(tokens, hidden)).add(routed) : routed).toFloatArray();
        } catch (RuntimeException e) {
            return fail("combine failed: " + e, false);
        }
        route.replyTo().tell(new RouterActor.Routed(route.stepId(), out));
        return Behaviors.stopped();
    }

    private Behavior<Command> fail(String reason, boolean unavailable) {
        route.replyTo().tell(new RouterActor.Failed(route.stepId(), "layer " + layer + ", step " + route.stepId()
                + ": " + reason, unavailable));
        return Behaviors.stopped();
    }

    /** Runs off the actor's thread: touches only immutable inputs and its own manager. */
    private float[] computeShared() {
        try (NDManager m = NDManager.newBaseManager()) {
            return ffn.shared(m.create(route.x(), new Shape(route.tokens(), hidden))).toFloatArray();
        }
    }

    /** The given token rows of x, (rows, hidden) row-major: a plain copy, so values are bit-identical. */
    private float[] gather(float[] x, int[] rows) {
        float[] out = new float[rows.length * hidden];
        for (int i = 0; i < rows.length; i++) {
            System.arraycopy(x, rows[i] * hidden, out, i * hidden, hidden);
        }
        return out;
    }
}
