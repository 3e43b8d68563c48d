package dev.cmoe.server.moe;

import ai.djl.ndarray.NDArray;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.server.scheduler.UnavailableException;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * A carved layer's FFN served by actors: {@link #forward} asks the layer's {@link RouterActor}
 * for the routed experts, computes the shared expert meanwhile, and blocks for the answer. It runs inside {@code LlamaModel.forward} on the
 * {@code cmoe.model-dispatcher}, where blocking is allowed; a failure or a timeout becomes an
 * exception, which the runner turns into INTERNAL for the affected requests.
 */
public final class ActorMoeFeedForward implements FeedForward {
    private static final AtomicLong STEPS = new AtomicLong();

    private final int layer;
    private final ActorRef<RouterActor.Command> router;
    private final Scheduler scheduler;
    private final Duration timeout;
    private final MoeFeedForward local;

    /**
     * @param timeout how long to wait for the router; longer than the router's own expert
     *     timeout, so its more precise failure normally arrives first
     * @param local the in-process FFN the router routes, shares and combines with; closed by
     *     {@link #close()} because this block replaced it in the model
     */
    public ActorMoeFeedForward(int layer, ActorRef<RouterActor.Command> router, Scheduler scheduler,
                               Duration timeout, MoeFeedForward local) {
        this.layer = layer;
        this.router = router;
        this.scheduler = scheduler;
        this.timeout = timeout;
        this.local = local;
    }

    @Override
    public NDArray forward(NDArray x) {
        int tokens = Math.toIntExact(x.getShape().get(0));
        float[] values = x.toFloatArray();
        long step = STEPS.incrementAndGet();
        boolean hasShared = local.config().shared() > 0;
        CompletableFuture<RouterActor.Reply> pending = AskPattern.<RouterActor.Command, RouterActor.Reply>ask(router,
                replyTo -> new RouterActor.Route(step, values, tokens, !hasShared, replyTo), timeout, scheduler)
                .toCompletableFuture();
        // The shared expert waits for nothing: this thread computes it while the routed rows are away,
        // instead of a hop to the router's pool and back.
        NDArray shared = hasShared ? local.shared(x) : null;
        RouterActor.Reply reply;
        try {
            reply = pending.get(timeout.toMillis() + 1000, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted waiting for layer " + layer + "'s router", e);
        } catch (ExecutionException | TimeoutException e) {
            Throwable cause = e instanceof ExecutionException ? e.getCause() : e;
            throw new IllegalStateException("layer " + layer + "'s router did not answer step " + step + " within "
                    + timeout + ": " + cause, cause);
        }
        return switch (reply) {
            case RouterActor.Routed r -> {
                NDArray routed = x.getManager().create(r.output(), x.getShape());
                // the same sum, in the same order, as the router's shared(x) + combine
                yield shared == null ? routed : shared.add(routed);
            }
            case RouterActor.Failed f -> throw f.unavailable() ? new UnavailableException("MoE " + f.reason())
                    : new IllegalStateException("MoE " + f.reason());
        };
    }

    /** The in-process FFN this block replaced (its router, shared expert and combine are used by the router). */
    public MoeFeedForward local() {
        return local;
    }

    @Override
    public void close() {
        local.close();
    }
}
