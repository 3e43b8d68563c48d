package dev.cmoe.experts.cluster;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.safetensors.Checkpoint;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletionStage;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Function;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.apache.pekko.Done;
import dev.cmoe.experts.ExpertWorker;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.cluster.ClusterEvent;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Subscribe;

/**
 * A running expert-worker node (the {@code cmoe worker} command, and tests): an actor system with
 * the {@code expert-worker} role in the cluster, one device worker per device, and the carved
 * checkpoint memory-mapped so that devices load only the experts the head places on them.
 *
 * <p>The node outlives its cluster membership. When the cluster downs it (the head crashed and
 * the split-brain resolver took the head's side, or this node was paused past failure detection)
 * or the last head leaves, the node starts a new actor system, an incarnation, that joins the
 * seeds again and waits there for a head: a restarted head finds its workers without restarting
 * them, and places experts on them afresh. It stops for good only when closed, when its system is
 * terminated from within this JVM, or when the head refuses it ({@link ExpertWorker.Refused}).
 */
public final class WorkerNode implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(WorkerNode.class);
    private static final Config LOGGING = ConfigFactory.parseString("""
            pekko.loggers = ["org.apache.pekko.event.slf4j.Slf4jLogger"]
            pekko.logging-filter = "org.apache.pekko.event.slf4j.Slf4jLoggingFilter"
            pekko.log-dead-letters-during-shutdown = off
            pekko.log-dead-letters = 0
            """);

    /** Wait before a new incarnation starts, so the old one's port and connections are released. */
    static final Duration REJOIN_DELAY = Duration.ofSeconds(1);

    /** Incarnations that fail to start in a row (say, the port stays taken) before the node gives up. */
    static final int START_ATTEMPTS = 10;

    /** Why this node's system stops when the last head leaves: a reason to rejoin, like being downed. */
    private static final class HeadLeft implements CoordinatedShutdown.Reason {
        static final HeadLeft INSTANCE = new HeadLeft();

        @Override
        public String toString() {
            return "the last head left the cluster";
        }
    }

    /** One actor system's life in the cluster, with its device workers. */
    private record Incarnation(ActorSystem<Void> system, List<ActorRef<ExpertWorker.Command>> devices) {
    }

    private final Checkpoint checkpoint;
    private final ExpertShape shape;
    private final Function<WorkerNode, Incarnation> incarnate;
    private final AtomicBoolean closed = new AtomicBoolean();
    private final AtomicReference<String> refusal = new AtomicReference<>();
    private final AtomicInteger rejoins = new AtomicInteger();
    private final CompletableFuture<Done> stopped = new CompletableFuture<>();
    private volatile Incarnation current;

    private WorkerNode(Checkpoint checkpoint, ExpertShape shape, Function<WorkerNode, Incarnation> incarnate) {
        this.checkpoint = checkpoint;
        this.shape = shape;
        this.incarnate = incarnate;
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
        try {
            ExpertShape shape = ExpertShape.of(config, moe,
                    LoadSpec.full().withDtype(dtype).resolveDtype(config, checkpoint));
            if (memoryPerDevice > 0 && memoryPerDevice < shape.expertBytes()) {
                throw new IllegalArgumentException("--memory-per-device " + memoryPerDevice
                        + " cannot hold one expert of " + shape.expertBytes() + " bytes");
            }
            int frame = ClusterSettings.frameBytesFor(maxBatchTokens, moe.maxActive(), shape.hidden());
            for (DeviceSpec d : devices) {
                // Start the engine on every device before joining: loading its natives takes seconds,
                // better spent while the cluster forms than in the head's first placement, and a
                // device that cannot work is reported here rather than as failed loads.
                try (NDManager m = NDManager.newBaseManager(d.device())) {
                    m.zeros(new Shape(1)).toFloatArray();
                    WeightKernels.of(shape.dtype()).checkComputes(m); // names the device and dtype if not
                }
            }
            ClusterSettings settings = new ClusterSettings(host, port, seeds, List.of(ClusterSettings.ROLE_WORKER),
                    frame, security.tls());
            Config systemConfig = LOGGING.withFallback(settings.config()).resolve();
            TensorSource source = TensorSource.of(checkpoint);
            WorkerNode node = new WorkerNode(checkpoint, shape, self -> {
                ActorSystem<Void> system = ActorSystem.create(headWatch(), ClusterSettings.SYSTEM_NAME, systemConfig);
                try {
                    return new Incarnation(system, ExpertDevices.start(system, name, devices, shape, source,
                            memoryPerDevice, frame, security.secret(), self::refused));
                } catch (RuntimeException e) {
                    system.terminate();
                    throw e;
                }
            });
            node.begin(node.incarnate.apply(node));
            return node;
        } catch (RuntimeException e) {
            checkpoint.close();
            throw e;
        }
    }

    private void begin(Incarnation incarnation) {
        current = incarnation;
        incarnation.system().getWhenTerminated().whenComplete((done, err) -> ended(incarnation));
        if (closed.get()) {
            incarnation.system().terminate(); // closed while it started
        }
    }

    /** The incarnation's system has stopped: rejoin if the cluster lost this node, else stop for good. */
    private void ended(Incarnation incarnation) {
        Optional<CoordinatedShutdown.Reason> reason = CoordinatedShutdown.get(incarnation.system()).getShutdownReason();
        boolean lost = reason.isPresent() && (reason.get() == HeadLeft.INSTANCE
                || reason.get().equals(CoordinatedShutdown.clusterDowningReason()));
        if (closed.get() || refusal.get() != null || !lost) {
            stopped.complete(Done.done());
            return;
        }
        LOG.warn("this worker is out of the cluster ({}); rejoining the seeds as a new incarnation",
                reason.get() == HeadLeft.INSTANCE ? reason.get() : "downed by the cluster");
        Thread t = new Thread(this::rejoin, "cmoe-worker-rejoin");
        t.setDaemon(true);
        t.start();
    }

    private void rejoin() {
        RuntimeException last = null;
        for (int attempt = 0; attempt < START_ATTEMPTS && !closed.get(); attempt++) {
            try {
                Thread.sleep(REJOIN_DELAY.toMillis() * (attempt + 1));
                Incarnation next = incarnate.apply(this);
                rejoins.incrementAndGet();
                begin(next);
                return;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            } catch (RuntimeException e) {
                last = e;
                LOG.warn("a new incarnation of this worker did not start (attempt {} of {}): {}", attempt + 1,
                        START_ATTEMPTS, e.toString());
            }
        }
        if (last != null && !closed.get()) {
            stopped.completeExceptionally(last);
        } else {
            stopped.complete(Done.done());
        }
    }

    private void refused(String reason) {
        if (refusal.compareAndSet(null, reason)) {
            current.system().terminate();
        }
    }

    /**
     * Stops this node's system when the last head leaves the cluster: the split-brain resolver downs
     * a worker cut off from a crashed head, but a head that leaves gracefully (restart, rollout)
     * would leave its workers in a cluster no new head joins. The node then rejoins as a new
     * incarnation, to join the new head.
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
                    ctx.getLog().warn("the head {} left the cluster; this worker leaves it too, to rejoin",
                            removed.member().address());
                    CoordinatedShutdown.get(ctx.getSystem()).run(HeadLeft.INSTANCE);
                }
                return Behaviors.same();
            });
        });
    }

    /** The actor system of the current incarnation. */
    public ActorSystem<Void> system() {
        return current.system();
    }

    /** The device workers of this node's current incarnation, in {@code --devices} order. */
    public List<ActorRef<ExpertWorker.Command>> devices() {
        return current.devices();
    }

    public ExpertShape shape() {
        return shape;
    }

    /** The address other nodes reach this one at (the current incarnation's). */
    public String address() {
        return Cluster.get(current.system()).selfMember().address().toString();
    }

    /** How many times this node has rejoined as a new incarnation. */
    public int rejoins() {
        return rejoins.get();
    }

    /** Why the head refused this node, if it did. */
    public Optional<String> refusal() {
        return Optional.ofNullable(refusal.get());
    }

    /**
     * Completes when the node has stopped for good: closed, its system terminated from within this
     * JVM, refused by the head, or unable to start a new incarnation (then exceptionally).
     */
    public CompletionStage<Done> whenTerminated() {
        return stopped;
    }

    /** Leaves the cluster gracefully (the head re-places this node's experts) and stops; idempotent. */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        try {
            ActorSystem<Void> system = current.system();
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
