package dev.cmoe.experts;

import ai.djl.Device;
import dev.cmoe.experts.cluster.ClusterMessage;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.WeightKernels;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.PreRestart;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * One routed expert of one layer on one device: the unit that placement loads, unloads and
 * replicates and that supervision restarts. Its ref names the replica in the routers' tables.
 * It loads the expert's kernel and hands it to its device's {@link DeviceCompute}, which computes
 * the rows of every expert of a step in one place. Spawn it on {@link #DISPATCHER}: loading blocks.
 *
 * <p>The kernel is loaded in the behaviour's setup, so a restart by the supervisor (see
 * {@link ExpertWorker}) reloads it from the checkpoint: after an engine fault the old arrays are
 * not trusted. On {@link PostStop} and before a restart the kernel is retired at the device's
 * compute, which closes it after any batch using it.
 */
public final class ExpertActor extends AbstractBehavior<ExpertActor.Command> {
    /** The dispatcher (configured in this module's reference.conf) experts and device compute run on. */
    public static final String DISPATCHER = "cmoe.expert-dispatcher";

    /** What an expert actor understands. */
    public sealed interface Command permits InjectFault, AwaitReady {
    }

    /**
     * Throws inside the actor as an engine fault would, so that supervision restarts the expert
     * with its weights reloaded (its device's compute sends it after a fault; tests and drills too).
     */
    public record InjectFault(String reason) implements Command, ClusterMessage {
    }

    /**
     * Answered with {@link Ready} once the weights are loaded: messages are handled after setup,
     * so the answer means the kernel is with the device's compute. Its worker uses it before
     * reporting a load done.
     */
    public record AwaitReady(ActorRef<Ready> replyTo) implements Command {
    }

    /** The expert's weights are loaded; its device computes its rows. */
    public record Ready(ExpertId expert, ActorRef<Command> self) {
    }

    private final ExpertId id;
    private final ExpertKernel kernel;
    private final ActorRef<DeviceCompute.Command> compute;

    private ExpertActor(ActorContext<Command> context, ExpertId id, Supplier<ExpertKernel> load,
                        ActorRef<DeviceCompute.Command> compute) {
        super(context);
        this.id = id;
        this.compute = compute;
        this.kernel = load.get();
        compute.tell(new DeviceCompute.Serve(id, kernel, context.getSelf()));
        context.getLog().debug("expert {} loaded", id);
    }

    /**
     * Expert {@code id} with the kernel {@code load} makes (called again on every restart), computed
     * by {@code compute}. Supervision is the spawner's choice ({@link ExpertWorker} restarts).
     */
    public static Behavior<Command> create(ExpertId id, Supplier<ExpertKernel> load,
                                           ActorRef<DeviceCompute.Command> compute) {
        return Behaviors.setup(ctx -> new ExpertActor(ctx, id, load, compute));
    }

    /** A carved expert's SwiGLU, its weights read from {@code source} onto {@code device} in {@code kernels}' dtype. */
    public static Behavior<Command> create(ExpertId id, int hidden, int expertSize, TensorSource source,
                                           Device device, WeightKernels kernels,
                                           ActorRef<DeviceCompute.Command> compute) {
        return create(id, () -> SwigluExpert.load(id, hidden, expertSize, source, device, kernels), compute);
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(InjectFault.class, this::onInjectFault)
                .onMessage(AwaitReady.class, a -> {
                    a.replyTo().tell(new Ready(id, getContext().getSelf()));
                    return this;
                })
                .onSignal(PreRestart.class, s -> retire(true))
                .onSignal(PostStop.class, s -> retire(false))
                .build();
    }

    private Behavior<Command> onInjectFault(InjectFault f) {
        throw new IllegalStateException("fault injected into expert " + id + ": " + f.reason());
    }

    private Behavior<Command> retire(boolean restarting) {
        compute.tell(new DeviceCompute.Retire(id, kernel, restarting));
        return this;
    }
}
