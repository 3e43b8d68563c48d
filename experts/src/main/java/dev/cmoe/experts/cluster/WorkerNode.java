package dev.cmoe.experts.cluster;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.safetensors.Checkpoint;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.Done;
import dev.cmoe.experts.ExpertWorker;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Subscribe;

/**
 * A running expert-worker node (the {@code cmoe worker} command, and tests): an actor system with
 * the {@code expert-worker} role in the cluster, one device worker per device, and the carved
 * checkpoint memory-mapped so that devices load only the experts the head places on them.
 */
public final class WorkerNode implements AutoCloseable {
    private static final Config LOGGING = ConfigFactory.parseString("""
            pekko.loggers = ["org.apache.pekko.event.slf4j.Slf4jLogger"]
            pekko.logging-filter = "org.apache.pekko.event.slf4j.Slf4jLoggingFilter"
            pekko.log-dead-letters-during-shutdown = off
            pekko.log-dead-letters = 0
            """);

    private final ActorSystem<Void> system;
    private final Checkpoint checkpoint;
    private final ExpertShape shape;
    private final List<ActorRef<ExpertWorker.Command>> devices;
    private final AtomicBoolean closed = new AtomicBoolean();

    private WorkerNode(ActorSystem<Void> system, Checkpoint checkpoint, ExpertShape shape,
                       List<ActorRef<ExpertWorker.Command>> devices) {
        this.system = system;
        this.checkpoint = checkpoint;
        this.shape = shape;
        this.devices = List.copyOf(devices);
    }

    /**
     * Joins the cluster of {@code settings} as worker {@code name} hosting {@code devices}.
     *
     * @param modelDir the carved checkpoint, at the same path content as the head's (a shared volume)
     * @param maxBatchTokens the head's largest step, to size this node's frames
     */
    public static WorkerNode start(String host, int port, List<String> seeds, String name, List<DeviceSpec> devices,
                                   Path modelDir, long memoryPerDevice, int maxBatchTokens) {
        return start(host, port, seeds, name, devices, modelDir, memoryPerDevice, maxBatchTokens, "auto");
    }

    /**
     * As {@link #start(String, int, List, String, List, Path, long, int)}, the experts computed in
     * {@code dtype} (auto, bf16, f16, f32); the head refuses a worker whose dtype is not its own.
     */
    public static WorkerNode start(String host, int port, List<String> seeds, String name, List<DeviceSpec> devices,
                                   Path modelDir, long memoryPerDevice, int maxBatchTokens, String dtype) {
        return start(host, port, seeds, name, devices, modelDir, memoryPerDevice, maxBatchTokens, dtype,
                ClusterSecurity.NONE);
    }

    /**
     * As {@link #start(String, int, List, String, List, Path, long, int, String)}, on a secured
     * cluster: {@code security}'s key material for the transport, and its secret to prove to the head.
     */
    public static WorkerNode start(String host, int port, List<String> seeds, String name, List<DeviceSpec> devices,
                                   Path modelDir, long memoryPerDevice, int maxBatchTokens, String dtype,
                                   ClusterSecurity security) {
        ModelConfig config = ModelConfig.load(modelDir);
        MoeConfig moe = MoeConfig.of(config).orElseThrow(() -> new IllegalArgumentException("model " + modelDir
                + " is dense (its config.json has no cmoe block): expert workers host a carved model's experts"));
        Checkpoint checkpoint = Checkpoint.open(modelDir);
        ActorSystem<Void> system = null;
        try {
            ExpertShape shape = ExpertShape.of(config, moe,
                    LoadSpec.full().withDtype(dtype).resolveDtype(config, checkpoint));
            if (memoryPerDevice > 0 && memoryPerDevice < shape.expertBytes()) {
                throw new IllegalArgumentException("--memory-per-device " + memoryPerDevice
                        + " cannot hold one expert of " + shape.expertBytes() + " bytes");
            }
            int frame = ClusterSettings.frameBytesFor(maxBatchTokens, moe.active(), shape.hidden());
            for (DeviceSpec d : devices) {
                // Start the engine on every device before joining: loading its natives takes seconds,
                // better spent while the cluster forms than in the head's first placement, and a
                // device that cannot work is reported here rather than as failed loads.
                try (NDManager m = NDManager.newBaseManager(d.device())) {
                    m.zeros(new Shape(1)).toFloatArray();
                }
            }
            ClusterSettings settings = new ClusterSettings(host, port, seeds, List.of(ClusterSettings.ROLE_WORKER),
                    frame, security.tls());
            system = ActorSystem.create(headWatch(), ClusterSettings.SYSTEM_NAME,
                    LOGGING.withFallback(settings.config()).resolve());
            List<ActorRef<ExpertWorker.Command>> refs = ExpertDevices.start(system, name, devices, shape,
                    TensorSource.of(checkpoint), memoryPerDevice, frame, security.secret());
            return new WorkerNode(system, checkpoint, shape, refs);
        } catch (RuntimeException e) {
            if (system != null) {
                system.terminate();
            }
            checkpoint.close();
            throw e;
        }
    }

    /**
     * Stops this node when the last head leaves the cluster: the split-brain resolver downs a
     * worker cut off from a crashed head, but a head that leaves gracefully (restart, rollout)
     * would leave its workers in a cluster no new head joins. Stopped, {@code cmoe worker} exits
     * and its supervisor starts it again, to join the new head.
     */
    private static Behavior<Void> headWatch() {
        return Behaviors.setup(ctx -> {
            ctx.spawn(headWatcher(), "head-watch");
            return Behaviors.empty();
        });
    }

    private static Behavior<ClusterEvent.MemberRemoved> headWatcher() {
        return Behaviors.setup(ctx -> {
            Cluster cluster = Cluster.get(ctx.getSystem());
            cluster.subscriptions().tell(Subscribe.create(ctx.getSelf(), ClusterEvent.MemberRemoved.class));
            return Behaviors.receiveMessage(removed -> {
                boolean otherHead = false;
                for (Member m : cluster.state().getMembers()) {
                    otherHead |= m.hasRole(ClusterSettings.ROLE_HEAD) && !m.equals(removed.member());
                }
                if (removed.member().hasRole(ClusterSettings.ROLE_HEAD) && !otherHead) {
                    ctx.getLog().warn("the head {} left the cluster; stopping this worker", removed.member().address());
                    ctx.getSystem().terminate();
                }
                return Behaviors.same();
            });
        });
    }

    public ActorSystem<Void> system() {
        return system;
    }

    /** The device workers of this node, in {@code --devices} order. */
    public List<ActorRef<ExpertWorker.Command>> devices() {
        return devices;
    }

    public ExpertShape shape() {
        return shape;
    }

    /** The address other nodes reach this one at. */
    public String address() {
        return Cluster.get(system).selfMember().address().toString();
    }

    /** Completes when the actor system has stopped (closed, or downed by the cluster). */
    public CompletionStage<Done> whenTerminated() {
        return system.getWhenTerminated();
    }

    /** Leaves the cluster gracefully (the head re-places this node's experts) and stops; idempotent. */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        try {
            system.terminate();
            system.getWhenTerminated().toCompletableFuture().get(Duration.ofSeconds(30).toSeconds(), TimeUnit.SECONDS);
        } catch (Exception e) {
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            throw new IllegalStateException("worker node did not stop within 30 s: " + e, e);
        } finally {
            checkpoint.close();
        }
    }
}
