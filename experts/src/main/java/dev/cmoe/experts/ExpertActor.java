package dev.cmoe.experts;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.cluster.ClusterMessage;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.moe.MoeWeightNames;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.PreRestart;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * One routed expert of one layer, its weights on one device: the unit a router scatters token
 * rows to. Spawn it on {@link #DISPATCHER}: loading and the SwiGLU block their thread.
 *
 * <p>The weights are loaded in the behaviour's setup, so a restart by the supervisor (see
 * {@link ExpertWorker}) reloads them from the checkpoint: after an engine fault the old arrays
 * are not trusted. The manager is released on {@link PostStop} and before a restart.
 */
public final class ExpertActor extends AbstractBehavior<ExpertActor.Command> {
    /** The dispatcher (configured in this module's reference.conf) expert actors must run on. */
    public static final String DISPATCHER = "cmoe.expert-dispatcher";

    /** What an expert actor understands. */
    public sealed interface Command permits Compute, InjectFault, AwaitReady {
    }

    /**
     * Expert output for {@code count} token rows of one step.
     *
     * @param stepId the sender's id of this request, echoed in the reply (a router's step puts the
     *               step and the part of it there, since one expert may get several parts of a step)
     * @param rows (count, hidden) row-major: the hidden states of the tokens routed here
     */
    public record Compute(long stepId, float[] rows, int count, ActorRef<Reply> replyTo)
            implements Command, ClusterMessage {
    }

    /**
     * Throws inside the actor as an engine fault would, so tests (and fault drills) can check
     * that supervision restarts the expert with its weights reloaded.
     */
    public record InjectFault(String reason) implements Command, ClusterMessage {
    }

    /**
     * Answered with {@link Ready} once the weights are loaded: messages are handled after setup,
     * so the answer means the expert serves. Its worker uses it before reporting a load done.
     */
    public record AwaitReady(ActorRef<Ready> replyTo) implements Command {
    }

    /** The expert's weights are loaded; {@code self} serves {@link Compute}. */
    public record Ready(ExpertId expert, ActorRef<Command> self) {
    }

    /** An expert's answer to {@link Compute}. */
    public sealed interface Reply permits Computed, Failed {
        long stepId();

        ExpertId expert();
    }

    /** @param outputs (count, hidden) row-major, the expert's unweighted SwiGLU of the rows */
    public record Computed(long stepId, ExpertId expert, float[] outputs) implements Reply, ClusterMessage {
    }

    /** The rows could not be computed; {@code reason} names the value at fault. */
    public record Failed(long stepId, ExpertId expert, String reason) implements Reply, ClusterMessage {
    }

    private final ExpertId id;
    private final int hidden;
    private final NDManager manager;
    private final NDArray gateT; // (hidden, m)
    private final NDArray upT;   // (hidden, m)
    private final NDArray downT; // (m, hidden)
    private final WeightKernels kernels;

    private ExpertActor(ActorContext<Command> context, ExpertId id, int hidden, int expertSize, TensorSource source,
                        Device device, WeightKernels kernels) {
        super(context);
        this.id = id;
        this.kernels = kernels;
        this.hidden = hidden;
        this.manager = NDManager.newBaseManager(device);
        try {
            int l = id.layer();
            int j = id.expert();
            gateT = Tensors.transposedView(kernels.load(manager, source,
                    MoeWeightNames.expert(l, j, MoeWeightNames.GATE), expertSize, hidden));
            upT = Tensors.transposedView(kernels.load(manager, source,
                    MoeWeightNames.expert(l, j, MoeWeightNames.UP), expertSize, hidden));
            downT = Tensors.transposedView(kernels.load(manager, source,
                    MoeWeightNames.expert(l, j, MoeWeightNames.DOWN), hidden, expertSize));
        } catch (RuntimeException e) {
            manager.close(); // nothing half-loaded survives a failed load
            throw e;
        }
        context.getLog().debug("expert {} loaded on {}", id, device);
    }

    /**
     * Loads expert {@code id}'s gate/up/down weights from {@code source} onto {@code device}.
     * Supervision is the spawner's choice ({@link ExpertWorker} restarts).
     *
     * @param hidden d, the model's hidden size
     * @param expertSize m, neurons per expert
     */
    public static Behavior<Command> create(ExpertId id, int hidden, int expertSize, TensorSource source,
                                           Device device) {
        return create(id, hidden, expertSize, source, device, WeightKernels.f32());
    }

    /** As {@link #create(ExpertId, int, int, TensorSource, Device)}, the weights held by {@code kernels}. */
    public static Behavior<Command> create(ExpertId id, int hidden, int expertSize, TensorSource source,
                                           Device device, WeightKernels kernels) {
        return Behaviors.setup(ctx -> new ExpertActor(ctx, id, hidden, expertSize, source, device, kernels));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Compute.class, this::onCompute)
                .onMessage(InjectFault.class, this::onInjectFault)
                .onMessage(AwaitReady.class, a -> {
                    a.replyTo().tell(new Ready(id, getContext().getSelf()));
                    return this;
                })
                .onSignal(PreRestart.class, s -> release())
                .onSignal(PostStop.class, s -> release())
                .build();
    }

    private Behavior<Command> onCompute(Compute c) {
        if (c.count() < 1 || c.rows().length != (long) c.count() * hidden) {
            c.replyTo().tell(new Failed(c.stepId(), id, "expected (" + c.count() + ", " + hidden + ") = "
                    + (long) c.count() * hidden + " row values, got " + c.rows().length));
            return this;
        }
        float[] out;
        try (NDManager step = manager.newSubManager()) {
            NDArray x = step.create(c.rows(), new Shape(c.count(), hidden));
            out = Ops.swiglu(x, gateT, upT, downT, kernels).toFloatArray();
        } catch (RuntimeException e) {
            // Answer first so the step fails now rather than at its timeout, then let the
            // supervisor restart this expert: after an engine error its arrays are suspect.
            c.replyTo().tell(new Failed(c.stepId(), id, "expert " + id + " failed: " + e));
            throw e;
        }
        c.replyTo().tell(new Computed(c.stepId(), id, out));
        return this;
    }

    private Behavior<Command> onInjectFault(InjectFault f) {
        throw new IllegalStateException("fault injected into expert " + id + ": " + f.reason());
    }

    private Behavior<Command> release() {
        manager.close();
        return this;
    }
}
