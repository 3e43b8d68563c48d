package dev.cmoe.server.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.cluster.ClusterSettings;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import java.util.HashSet;
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
 * The scatter–gather of one routed step of one layer: one {@code Compute} per selected expert
 * (all of its rows at once, never per token) to the replica its router chose, the shared expert
 * computed concurrently, an expected reply count, and timeouts that answer
 * {@link RouterActor.Failed} instead of hanging. When the router reports a lost device, the rows
 * sent there are sent again to a surviving replica (the expert is deterministic, so the step's
 * result is the same); an expert left without any replica fails the step as unavailable after
 * {@link RouterActor.Limits#unavailable()}. It answers exactly once and stops; late or duplicate
 * replies are ignored.
 */
final class StepGather extends AbstractBehavior<StepGather.Command> {

    sealed interface Command permits ExpertReply, SharedDone, TableChanged, TimedOut, Homeless {
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
    private final float[][] inputs;           // per routed expert: its rows (rows, hidden), kept for re-sends
    private final float[][] outputs;          // per routed expert: (rows, hidden) row-major, null until it answers
    private final Replica[] sentTo;           // per routed expert: the replica computing it, null while homeless
    private final TreeSet<Integer> waiting = new TreeSet<>(); // experts yet to answer
    private final Set<String> lost = new HashSet<>();         // devices lost during this step
    private final boolean hasShared;
    private LayerReplicas replicas;
    private float[] shared;                    // (tokens, hidden), null until computed (or without one)
    private int expected;                      // replies still expected: experts + shared

    private StepGather(ActorContext<Command> context, TimerScheduler<Command> timers, int layer, int hidden,
                       MoeFeedForward ffn, Routing routing, RouterActor.Route route, Replica[] chosen,
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
        this.inputs = new float[routing.nRouted()][];
        this.outputs = new float[routing.nRouted()][];
        this.sentTo = chosen.clone();
        this.hasShared = ffn.config().shared() > 0;
        this.replies = context.messageAdapter(ExpertActor.Reply.class, ExpertReply::new);
        for (int j = 0; j < outputs.length; j++) {
            int[] rows = routing.rows(j);
            if (rows.length > 0) {
                waiting.add(j);
                inputs[j] = gather(route.x(), rows);
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
        for (int j : waiting) {
            if (sentTo[j] != null) {
                send(j);
            }
        }
        armHomeless();
    }

    static Behavior<Command> create(int layer, int hidden, MoeFeedForward ffn, Routing routing,
                                    RouterActor.Route route, Replica[] chosen, LayerReplicas replicas,
                                    RouterActor.Limits limits, ActorRef<RouterActor.Command> router) {
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers ->
                new StepGather(ctx, timers, layer, hidden, ffn, routing, route, chosen, replicas, limits, router)));
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
                .onMessage(TimedOut.class, t -> fail("experts " + waiting + (hasShared && shared == null
                        ? " and the shared expert" : "") + " did not answer within " + limits.expert(), false))
                .build();
    }

    private Behavior<Command> onExpertReply(ExpertReply m) {
        switch (m.reply()) {
            case ExpertActor.Computed c -> {
                int j = c.expert().expert();
                if (c.stepId() != route.stepId() || c.expert().layer() != layer || !waiting.remove(j)) {
                    return this; // not ours, or a duplicate (an answer from a replica we moved away from)
                }
                outputs[j] = c.outputs();
                expected--;
                if (sentTo[j] != null) {
                    router.tell(new RouterActor.WorkDone(getContext().getSelf(), sentTo[j].ref(), routing.rows(j).length));
                }
            }
            case ExpertActor.Failed f -> {
                if (f.stepId() != route.stepId() || !waiting.contains(f.expert().expert())) {
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

    /** Re-sends the rows of experts whose replica was lost, or that had none, to a live replica. */
    private Behavior<Command> onTableChanged(TableChanged t) {
        replicas = t.replicas();
        lost.addAll(t.lostDevices());
        for (int j : waiting) {
            Replica was = sentTo[j];
            if (was != null && !lost.contains(was.device())) {
                continue; // still alive (perhaps retiring: it answers before it is unloaded)
            }
            Replica next = replicas.of(j).stream().filter(r -> !lost.contains(r.device())).findFirst().orElse(null);
            sentTo[j] = next;
            router.tell(new RouterActor.WorkMoved(getContext().getSelf(), was == null ? null : was.ref(),
                    next == null ? null : next.ref(), routing.rows(j).length));
            if (next != null) {
                getContext().getLog().info("layer {} step {}: expert {} re-sent from {} to {}", layer, route.stepId(),
                        j, was == null ? "nowhere" : was.device(), next.device());
                send(j);
            }
        }
        armHomeless();
        return this;
    }

    private void send(int j) {
        Replica r = sentTo[j];
        int n = routing.rows(j).length;
        if (limits.maxMessageBytes() > 0 && r.ref().path().address().hasGlobalScope()
                && ClusterSettings.tensorMessageBytes(n, hidden) > limits.maxMessageBytes()) {
            // Artery would drop it silently; say why instead of waiting for the timeout.
            getContext().getSelf().tell(new ExpertReply(new ExpertActor.Failed(route.stepId(),
                    new dev.cmoe.experts.ExpertId(layer, j), n + " rows × " + hidden + " floats exceed the cluster's "
                    + "frame size of " + limits.maxMessageBytes() + " bytes (size frames for --max-batch-tokens)")));
            return;
        }
        r.ref().tell(new ExpertActor.Compute(route.stepId(), inputs[j], n, replies));
    }

    private TreeSet<Integer> homeless() {
        TreeSet<Integer> out = new TreeSet<>();
        for (int j : waiting) {
            if (sentTo[j] == null) {
                out.add(j);
            }
        }
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
            NDArray[] arrays = new NDArray[outputs.length];
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
