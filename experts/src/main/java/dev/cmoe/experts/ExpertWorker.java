package dev.cmoe.experts;

import ai.djl.Device;
import dev.cmoe.experts.cluster.ClusterMessage;
import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.safetensors.DType;
import java.time.Duration;
import java.util.function.Consumer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.actor.typed.receptionist.ServiceKey;

/**
 * The experts of one device: spawns an {@link ExpertActor} per hosted expert, restarts any
 * that fails, and the device's {@link DeviceCompute} that computes their rows step by step, so
 * one device's faults are contained there and routers keep the same refs. In a cluster the head
 * tells it which experts to {@link Load} and {@link Unload} (placement and rebalancing); it loads
 * only those, within its memory budget, from the shared checkpoint.
 */
public final class ExpertWorker extends AbstractBehavior<ExpertWorker.Command> {
    /** The key under which expert-worker nodes register each device's worker with the receptionist. */
    public static final ServiceKey<Command> SERVICE_KEY = ServiceKey.create(Command.class, "cmoe-expert-device");
    /** The config path of how long a {@link Load} may take before it is answered as failed. */
    public static final String LOAD_TIMEOUT = "cmoe.expert.load-timeout";

    /** What a worker understands. */
    public sealed interface Command permits GetHosted, Describe, Load, Unload, Refused, ExpertReady, ExpertStopped,
            LoadTimedOut {
    }

    /**
     * Asks which experts this worker hosts, and their refs (in-process use); answered once every
     * expert spawned so far serves, so that a router may send its first step at once.
     */
    public record GetHosted(ActorRef<Hosted> replyTo) implements Command {
    }

    /**
     * The experts of one worker.
     *
     * @param experts expert → its actor, in spawn order (stable across restarts)
     * @param compute where a router sends each step's rows for these experts
     */
    public record Hosted(String worker, Device device, Map<ExpertId, ActorRef<ExpertActor.Command>> experts,
                         ActorRef<DeviceCompute.Command> compute) {
    }

    /**
     * Asks a device what it is (the head's first message to a newly discovered device).
     *
     * @param challenge fresh from the head ({@link ClusterSecret#challenge}); the device proves the secret over it
     */
    public record Describe(String challenge, ActorRef<Description> replyTo) implements Command, ClusterMessage {
    }

    /**
     * A device as the head needs to know it.
     *
     * @param deviceId {@code WORKER/DEVICE}, e.g. {@code worker-1/gpu:0}
     * @param memoryBytes what it may spend on expert weights; 0 = not limited
     * @param maxFrameBytes the largest message its node accepts (Artery's maximum-frame-size); 0 = in-process
     * @param hosted the experts it serves now
     * @param proof the cluster secret's answer to the challenge, for this device at this node's address
     * @param compute where a router sends each step's rows for the experts of this device
     */
    public record Description(String deviceId, ExpertShape shape, long memoryBytes, int maxFrameBytes,
                              List<ExpertId> hosted, String proof, ActorRef<DeviceCompute.Command> compute)
            implements ClusterMessage {
    }

    /** Host these experts (those already hosted are kept); answered once all serve, or with a failure. */
    public record Load(long opId, List<ExpertId> experts, ActorRef<LoadResult> replyTo)
            implements Command, ClusterMessage {
    }

    /**
     * The answer to {@link Load}.
     *
     * @param ready requested expert → its serving actor (all of them when {@code failure} is empty)
     * @param failure empty on success, else what went wrong, naming the experts and values at fault
     */
    public record LoadResult(long opId, String deviceId, Map<ExpertId, ActorRef<ExpertActor.Command>> ready,
                             String failure) implements ClusterMessage {
        public boolean ok() {
            return failure.isEmpty();
        }
    }

    /** Stop hosting these experts (make-before-break: the head sends it once no router uses them). */
    public record Unload(long opId, List<ExpertId> experts, ActorRef<Unloaded> replyTo)
            implements Command, ClusterMessage {
    }

    /** The answer to {@link Unload}: what the device hosts now. */
    public record Unloaded(long opId, String deviceId, List<ExpertId> hosted) implements ClusterMessage {
    }

    /**
     * The head will give this device nothing (it did not prove the cluster's secret) and downs its
     * node: the node should stop for good rather than rejoin, and say why.
     */
    public record Refused(String reason) implements Command, ClusterMessage {
    }

    private record ExpertReady(ExpertActor.Ready ready) implements Command {
    }

    private record ExpertStopped(ExpertId id, ActorRef<ExpertActor.Command> ref) implements Command {
    }

    private record LoadTimedOut(long opId) implements Command {
    }

    /** A load waiting for its experts' weights. */
    private record PendingLoad(Load load, Set<ExpertId> waiting) {
    }

    private final String name;
    private final Device device;
    private final ExpertShape shape;
    private final TensorSource source;
    private final long memoryBytes;
    private final int maxFrameBytes;
    private final Duration loadTimeout;
    private final ClusterSecret secret;
    private final Consumer<String> onRefused;
    private final TimerScheduler<Command> timers;
    private final Map<ExpertId, ActorRef<ExpertActor.Command>> experts = new LinkedHashMap<>(); // id -> actor
    private final Set<ExpertId> ready = new HashSet<>();             // weights loaded, serving
    private final Map<Long, PendingLoad> loads = new LinkedHashMap<>(); // opId -> load in progress
    private final ActorRef<ExpertActor.Ready> readyAdapter;
    private final ActorRef<DeviceCompute.Command> compute;
    private final List<ActorRef<Hosted>> hostedWaiting = new ArrayList<>(); // GetHosted before all served
    private long incarnations;

    private ExpertWorker(ActorContext<Command> context, TimerScheduler<Command> timers, String name, Device device,
                         ExpertShape shape, TensorSource source, long memoryBytes, int maxFrameBytes,
                         List<ExpertId> hosted, ClusterSecret secret, Consumer<String> onRefused) {
        super(context);
        this.secret = secret;
        this.onRefused = onRefused;
        this.name = name;
        this.device = device;
        this.shape = shape;
        this.source = source;
        this.memoryBytes = memoryBytes;
        this.maxFrameBytes = maxFrameBytes;
        this.timers = timers;
        this.loadTimeout = context.getSystem().settings().config().getDuration(LOAD_TIMEOUT);
        this.readyAdapter = context.messageAdapter(ExpertActor.Ready.class, ExpertReady::new);
        this.compute = context.spawn(DeviceCompute.create(name, device, shape.hidden(), shape.dtype()), "compute",
                DispatcherSelector.fromConfig(ExpertActor.DISPATCHER));
        for (ExpertId id : hosted) {
            spawn(id);
        }
    }

    /**
     * Hosts {@code hosted} experts on {@code device}, their weights read from {@code source} (which
     * must stay readable while the worker lives: restarts and later loads read it again).
     *
     * @param name the device id in placement reports, e.g. "worker-1/gpu:0" or "cpu-0"
     * @param memoryBytes what the experts may take on the device; 0 = not limited
     * @param maxFrameBytes the largest message this node accepts, reported to the head; 0 in-process
     * @param secret the cluster's secret, proved to the head in every {@link Description}
     */
    public static Behavior<Command> create(String name, Device device, ExpertShape shape, TensorSource source,
                                           long memoryBytes, int maxFrameBytes, List<ExpertId> hosted,
                                           ClusterSecret secret) {
        return create(name, device, shape, source, memoryBytes, maxFrameBytes, hosted, secret, reason -> { });
    }

    /**
     * As {@link #create(String, Device, ExpertShape, TensorSource, long, int, List, ClusterSecret)},
     * telling {@code onRefused} when the head refuses this device ({@link Refused}).
     */
    public static Behavior<Command> create(String name, Device device, ExpertShape shape, TensorSource source,
                                           long memoryBytes, int maxFrameBytes, List<ExpertId> hosted,
                                           ClusterSecret secret, Consumer<String> onRefused) {
        List<ExpertId> initial = List.copyOf(hosted);
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers -> new ExpertWorker(ctx, timers, name, device, shape,
                source, memoryBytes, maxFrameBytes, initial, secret, onRefused)));
    }

    /** An in-process float32 worker hosting {@code hosted} (tests): no budget, no frames. */
    public static Behavior<Command> create(String name, Device device, int hidden, int expertSize,
                                           List<ExpertId> hosted, TensorSource source) {
        return create(name, device, hidden, expertSize, DType.F32, hosted, source);
    }

    /** An in-process worker hosting {@code hosted} in {@code dtype} (single-node serving): no budget, no frames. */
    public static Behavior<Command> create(String name, Device device, int hidden, int expertSize, DType dtype,
                                           List<ExpertId> hosted, TensorSource source) {
        int layers = hosted.stream().mapToInt(ExpertId::layer).max().orElse(0) + 1;
        int routed = hosted.stream().mapToInt(ExpertId::expert).max().orElse(0) + 1;
        return create(name, device, new ExpertShape(layers, routed, hidden, expertSize, dtype), source, 0, 0, hosted,
                ClusterSecret.OPEN);
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(GetHosted.class, this::onGetHosted)
                .onMessage(Refused.class, r -> {
                    getContext().getLog().error("the head refused device {}: {}", name, r.reason());
                    onRefused.accept(r.reason());
                    return this;
                })
                .onMessage(Describe.class, this::onDescribe)
                .onMessage(Load.class, this::onLoad)
                .onMessage(Unload.class, this::onUnload)
                .onMessage(ExpertReady.class, this::onExpertReady)
                .onMessage(ExpertStopped.class, this::onExpertStopped)
                .onMessage(LoadTimedOut.class, this::onLoadTimedOut)
                .build();
    }

    private Behavior<Command> onGetHosted(GetHosted g) {
        hostedWaiting.add(g.replyTo());
        answerHosted();
        return this;
    }

    private void answerHosted() {
        if (hostedWaiting.isEmpty() || !ready.containsAll(experts.keySet())) {
            return;
        }
        Hosted h = new Hosted(name, device, Collections.unmodifiableMap(new LinkedHashMap<>(experts)), compute);
        hostedWaiting.forEach(r -> r.tell(h));
        hostedWaiting.clear();
    }

    private Behavior<Command> onDescribe(Describe d) {
        // bound to this node's address: a member relaying another's answer is caught by the head
        String address = getContext().getSystem().address().toString();
        d.replyTo().tell(new Description(name, shape, memoryBytes, maxFrameBytes, readyList(),
                secret.prove(d.challenge(), name, address), compute));
        return this;
    }

    private Behavior<Command> onLoad(Load load) {
        List<ExpertId> foreign = load.experts().stream().filter(id -> !shape.contains(id)).toList();
        if (!foreign.isEmpty()) {
            return answer(load, "device " + name + " serves " + shape + "; it has no experts " + foreign);
        }
        List<ExpertId> missing = load.experts().stream().distinct().filter(id -> !experts.containsKey(id)).toList();
        long need = (experts.size() + missing.size()) * shape.expertBytes();
        if (memoryBytes > 0 && need > memoryBytes) {
            return answer(load, "device " + name + " cannot host " + missing.size() + " more experts: "
                    + (experts.size() + missing.size()) + " × " + shape.expertBytes() + " bytes = " + need
                    + " bytes exceeds its memory budget of " + memoryBytes + " bytes");
        }
        missing.forEach(this::spawn);
        Set<ExpertId> waiting = new LinkedHashSet<>(load.experts());
        waiting.removeAll(ready);
        if (waiting.isEmpty()) {
            return answer(load, "");
        }
        loads.put(load.opId(), new PendingLoad(load, waiting));
        timers.startSingleTimer(load.opId(), new LoadTimedOut(load.opId()), loadTimeout);
        return this;
    }

    private Behavior<Command> onUnload(Unload u) {
        for (ExpertId id : u.experts()) {
            ActorRef<ExpertActor.Command> ref = experts.remove(id);
            ready.remove(id);
            if (ref != null) {
                getContext().stop(ref);
            }
        }
        getContext().getLog().info("device {} unloaded {} experts, hosts {}", name, u.experts().size(),
                experts.size());
        u.replyTo().tell(new Unloaded(u.opId(), name, readyList()));
        return this;
    }

    private Behavior<Command> onExpertReady(ExpertReady m) {
        ExpertId id = m.ready().expert();
        if (experts.get(id) == null || !experts.get(id).equals(m.ready().self())) {
            return this; // unloaded meanwhile
        }
        ready.add(id);
        answerHosted();
        for (PendingLoad p : List.copyOf(loads.values())) {
            if (!p.waiting().remove(id)) {
                continue;
            }
            if (p.waiting().isEmpty()) {
                loads.remove(p.load().opId());
                timers.cancel(p.load().opId());
                answer(p.load(), "");
            } else {
                // the timeout bounds a load that stalls, not one that is large: it restarts with each expert
                timers.startSingleTimer(p.load().opId(), new LoadTimedOut(p.load().opId()), loadTimeout);
            }
        }
        return this;
    }

    private Behavior<Command> onExpertStopped(ExpertStopped m) {
        if (!m.ref().equals(experts.get(m.id()))) {
            return this; // an unloaded expert finished stopping
        }
        // Supervision gave up (repeated faults, or weights that cannot be loaded): it is gone.
        experts.remove(m.id());
        ready.remove(m.id());
        answerHosted();
        for (PendingLoad p : List.copyOf(loads.values())) {
            if (p.waiting().contains(m.id())) {
                loads.remove(p.load().opId());
                timers.cancel(p.load().opId());
                answer(p.load(), "expert " + m.id() + " stopped on device " + name
                        + " before serving (its weights could not be loaded; see that worker's log)");
            }
        }
        return this;
    }

    private Behavior<Command> onLoadTimedOut(LoadTimedOut t) {
        PendingLoad p = loads.remove(t.opId());
        if (p != null) {
            answer(p.load(), "experts " + p.waiting() + " did not finish loading on device " + name + ": no expert"
                    + " of the load became ready for " + loadTimeout);
        }
        return this;
    }

    private Behavior<Command> answer(Load load, String failure) {
        Map<ExpertId, ActorRef<ExpertActor.Command>> out = new LinkedHashMap<>();
        for (ExpertId id : load.experts()) {
            if (ready.contains(id)) {
                out.put(id, experts.get(id));
            }
        }
        if (!failure.isEmpty()) {
            getContext().getLog().warn("load {} on device {} failed: {}", load.opId(), name, failure);
        }
        load.replyTo().tell(new LoadResult(load.opId(), name, out, failure));
        return this;
    }

    private void spawn(ExpertId id) {
        // Restart, not stop: a restarted expert reloads its weights in setup and keeps its ref,
        // so routers need not learn about the fault. Repeated faults still end it (limit).
        Behavior<ExpertActor.Command> supervised = Behaviors.supervise(
                        ExpertActor.create(id, shape.hidden(), shape.expertSize(), source, device,
                                WeightKernels.of(shape.dtype()), compute))
                .onFailure(SupervisorStrategy.restart().withLimit(10, Duration.ofMinutes(1)));
        // An unloaded expert's name stays taken until it has stopped; a quick reload gets a fresh one.
        String actorName = getContext().getChild(id.actorName()).isEmpty() ? id.actorName()
                : id.actorName() + "-" + (++incarnations);
        ActorRef<ExpertActor.Command> ref = getContext().spawn(supervised, actorName,
                DispatcherSelector.fromConfig(ExpertActor.DISPATCHER));
        getContext().watchWith(ref, new ExpertStopped(id, ref));
        experts.put(id, ref);
        ref.tell(new ExpertActor.AwaitReady(readyAdapter));
    }

    private List<ExpertId> readyList() {
        List<ExpertId> out = new ArrayList<>();
        for (ExpertId id : experts.keySet()) {
            if (ready.contains(id)) {
                out.add(id);
            }
        }
        return out;
    }
}
