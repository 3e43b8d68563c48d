package dev.cmoe.server.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.server.metrics.ServerMetrics;
import io.micrometer.core.instrument.Counter;
import java.time.Duration;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.PreRestart;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * The router of one MoE layer: decides each token's experts with exactly the in-process code
 * ({@link MoeFeedForward#route}) and hands the step to a {@link StepGather}, which sends each
 * selected expert actor one message with all of its rows, computes the shared expert meanwhile
 * and combines as {@link MoeFeedForward#combine} does. Spawn it on {@link #DISPATCHER}.
 */
public final class RouterActor extends AbstractBehavior<RouterActor.Command> {
    /** The dispatcher (server reference.conf) routers and their gatherers run on: they do tensor work. */
    public static final String DISPATCHER = "cmoe.router-dispatcher";

    /** What a router understands. */
    public sealed interface Command permits Route {
    }

    /**
     * The FFN input of one whole step.
     *
     * @param x (tokens, hidden) row-major: every token of the step's batch
     */
    public record Route(long stepId, float[] x, int tokens, ActorRef<Reply> replyTo) implements Command {
    }

    /** The layer's answer to {@link Route}. */
    public sealed interface Reply permits Routed, Failed {
        long stepId();
    }

    /** @param output (tokens, hidden) row-major, the MoE layer's output */
    public record Routed(long stepId, float[] output) implements Reply {
    }

    /** The step could not be computed (an expert failed or did not answer in time). */
    public record Failed(long stepId, String reason) implements Reply {
    }

    private final int layer;
    private final int hidden;
    private final MoeFeedForward ffn;
    private final List<ActorRef<ExpertActor.Command>> experts; // index j -> routed expert j's actor
    private final Duration timeout;
    private final Counter[] tokens; // per routed expert: tokens routed to it
    private final NDManager manager = NDManager.newBaseManager();

    private RouterActor(ActorContext<Command> context, int layer, int hidden, MoeFeedForward ffn,
                        List<ActorRef<ExpertActor.Command>> experts, Duration timeout, ServerMetrics metrics) {
        super(context);
        if (experts.size() != ffn.config().routed()) {
            throw new IllegalArgumentException("layer " + layer + " has " + ffn.config().routed()
                    + " routed experts, got " + experts.size() + " expert actors");
        }
        this.layer = layer;
        this.hidden = hidden;
        this.ffn = ffn;
        this.experts = List.copyOf(experts);
        this.timeout = timeout;
        this.tokens = new Counter[experts.size()];
        for (int j = 0; j < tokens.length; j++) {
            tokens[j] = metrics.expertTokens(layer, j);
        }
    }

    /**
     * Routes layer {@code layer} with {@code ffn}'s router, shared expert and combine; the routed
     * experts are {@code experts} (index j). {@code ffn} stays the caller's to close.
     *
     * @param timeout how long a step waits for its experts before it fails
     */
    public static Behavior<Command> create(int layer, int hidden, MoeFeedForward ffn,
                                           List<ActorRef<ExpertActor.Command>> experts, Duration timeout,
                                           ServerMetrics metrics) {
        // Restart on a bug rather than stop: a stopped router would fail every later step by
        // timeout. Its children are the in-flight steps' gatherers; they finish on their own.
        return Behaviors.supervise(Behaviors.<Command>setup(ctx ->
                        new RouterActor(ctx, layer, hidden, ffn, experts, timeout, metrics)))
                .onFailure(SupervisorStrategy.restart().withStopChildren(false));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Route.class, this::onRoute)
                .onSignal(PreRestart.class, s -> release())
                .onSignal(PostStop.class, s -> release())
                .build();
    }

    private Behavior<Command> onRoute(Route r) {
        if (r.tokens() < 1 || r.x().length != (long) r.tokens() * hidden) {
            r.replyTo().tell(new Failed(r.stepId(), "layer " + layer + ": expected (" + r.tokens() + ", " + hidden
                    + ") hidden states, got " + r.x().length + " values"));
            return this;
        }
        Routing routing;
        try (NDManager step = manager.newSubManager()) {
            NDArray x = step.create(r.x(), new Shape(r.tokens(), hidden));
            routing = ffn.route(x);
        } catch (RuntimeException e) {
            r.replyTo().tell(new Failed(r.stepId(), "layer " + layer + ": routing failed: " + e));
            return this;
        }
        for (int j = 0; j < tokens.length; j++) {
            int n = routing.rows(j).length;
            if (n > 0) {
                tokens[j].increment(n);
            }
        }
        getContext().spawnAnonymous(StepGather.create(layer, hidden, ffn, routing, r, experts, timeout),
                DispatcherSelector.fromConfig(DISPATCHER));
        return this;
    }

    private Behavior<Command> release() {
        manager.close();
        return this;
    }
}
