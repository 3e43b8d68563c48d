package dev.cmoe.server.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import java.time.Duration;
import java.util.List;
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
 * (all of its rows at once, never per token), the shared expert computed concurrently, an
 * expected reply count, and a timeout that answers {@link RouterActor.Failed} instead of hanging.
 * It answers exactly once and stops; late replies go to dead letters.
 */
final class StepGather extends AbstractBehavior<StepGather.Command> {

    sealed interface Command permits ExpertReply, SharedDone, TimedOut {
    }

    private record ExpertReply(ExpertActor.Reply reply) implements Command {
    }

    /** @param output (tokens, hidden) row-major, or null with {@code failure} */
    private record SharedDone(float[] output, Throwable failure) implements Command {
    }

    private enum TimedOut implements Command {
        INSTANCE
    }

    private final int layer;
    private final int hidden;
    private final MoeFeedForward ffn;
    private final Routing routing;
    private final RouterActor.Route route;
    private final Duration timeout;
    private final float[][] outputs;          // per routed expert: (rows, hidden) row-major, null until it answers
    private final TreeSet<Integer> waiting = new TreeSet<>(); // experts yet to answer
    private final boolean hasShared;
    private float[] shared;                    // (tokens, hidden), null until computed (or without one)
    private int expected;                      // replies still expected: experts + shared

    private StepGather(ActorContext<Command> context, TimerScheduler<Command> timers, int layer, int hidden,
                       MoeFeedForward ffn, Routing routing, RouterActor.Route route,
                       List<ActorRef<ExpertActor.Command>> experts, Duration timeout) {
        super(context);
        this.layer = layer;
        this.hidden = hidden;
        this.ffn = ffn;
        this.routing = routing;
        this.route = route;
        this.timeout = timeout;
        this.outputs = new float[routing.nRouted()][];
        this.hasShared = ffn.config().shared() > 0;
        ActorRef<ExpertActor.Reply> replies = context.messageAdapter(ExpertActor.Reply.class, ExpertReply::new);
        for (int j = 0; j < outputs.length; j++) {
            int[] rows = routing.rows(j);
            if (rows.length > 0) {
                waiting.add(j);
                experts.get(j).tell(new ExpertActor.Compute(route.stepId(), gather(route.x(), rows), rows.length,
                        replies));
            }
        }
        expected = waiting.size();
        if (hasShared) {
            expected++;
            // The shared expert runs on this dispatcher's pool while the routed experts work.
            Executor executor = context.getSystem().dispatchers()
                    .lookup(DispatcherSelector.fromConfig(RouterActor.DISPATCHER));
            CompletableFuture<float[]> done = CompletableFuture.supplyAsync(this::computeShared, executor);
            context.pipeToSelf(done, SharedDone::new);
        }
        timers.startSingleTimer(TimedOut.INSTANCE, timeout);
    }

    static Behavior<Command> create(int layer, int hidden, MoeFeedForward ffn, Routing routing,
                                    RouterActor.Route route, List<ActorRef<ExpertActor.Command>> experts,
                                    Duration timeout) {
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers ->
                new StepGather(ctx, timers, layer, hidden, ffn, routing, route, experts, timeout)));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(ExpertReply.class, this::onExpertReply)
                .onMessage(SharedDone.class, this::onSharedDone)
                .onMessage(TimedOut.class, t -> fail("experts " + waiting + (hasShared && shared == null
                        ? " and the shared expert" : "") + " did not answer within " + timeout))
                .build();
    }

    private Behavior<Command> onExpertReply(ExpertReply m) {
        switch (m.reply()) {
            case ExpertActor.Computed c -> {
                int j = c.expert().expert();
                if (c.stepId() != route.stepId() || !waiting.remove(j)) {
                    return this; // not ours, or a duplicate
                }
                outputs[j] = c.outputs();
                expected--;
            }
            case ExpertActor.Failed f -> {
                return fail("expert " + f.expert() + ": " + f.reason());
            }
        }
        return expected == 0 ? finish() : this;
    }

    private Behavior<Command> onSharedDone(SharedDone m) {
        if (m.failure() != null) {
            return fail("shared expert: " + m.failure());
        }
        shared = m.output();
        expected--;
        return expected == 0 ? finish() : this;
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
            return fail("combine failed: " + e);
        }
        route.replyTo().tell(new RouterActor.Routed(route.stepId(), out));
        return Behaviors.stopped();
    }

    private Behavior<Command> fail(String reason) {
        route.replyTo().tell(new RouterActor.Failed(route.stepId(), "layer " + layer + ", step " + route.stepId()
                + ": " + reason));
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
