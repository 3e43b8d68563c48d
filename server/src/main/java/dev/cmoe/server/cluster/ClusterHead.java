package dev.cmoe.server.cluster;

import com.typesafe.config.Config;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.experts.cluster.ExpertDevices;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.server.grpc.ServingGate;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.CarvedTopology;
import dev.cmoe.server.moe.LayerReplicas;
import dev.cmoe.server.moe.RouterActor;
import dev.cmoe.server.moe.TransportWatch;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;

/**
 * Wires the head of a cluster on its (cluster) actor system: a router per layer starting with
 * empty replica tables, the {@link PlacementCoordinator} that fills them as devices join, a
 * {@link ServingGate} that opens once every expert has a live host, and the Admin service.
 */
public final class ClusterHead {
    private final ActorRef<PlacementCoordinator.Command> coordinator;
    private final ServingGate gate;
    private final AtomicReference<String> summary;
    private final Duration rpcTimeout;

    private ClusterHead(ActorRef<PlacementCoordinator.Command> coordinator, ServingGate gate,
                        AtomicReference<String> summary, Duration rpcTimeout) {
        this.coordinator = coordinator;
        this.gate = gate;
        this.summary = summary;
        this.rpcTimeout = rpcTimeout;
    }

    /**
     * Installs the head's actors into {@code model} (whose in-process routed experts are freed).
     *
     * @param frameBytes the frame size of this node; also required of every device's node
     * @param source the checkpoint, when {@code options} has local devices (else unused, may be null)
     */
    public static ClusterHead install(ActorSystem<?> system, LlamaModel model, MoeConfig moe, ExpertShape shape,
                                      HeadOptions options, int frameBytes, TensorSource source,
                                      ServerMetrics metrics) {
        Config c = system.settings().config();
        ActorRef<TransportWatch.Command> watch = system.systemActorOf(TransportWatch.create(), "transport-watch",
                Props.empty());
        RouterActor.Limits limits = new RouterActor.Limits(c.getDuration(CarvedTopology.EXPERT_TIMEOUT),
                c.getDuration("cmoe.router.unavailable-timeout"), frameBytes, c.getDuration("cmoe.router.stall-after"),
                watch);
        List<ActorRef<RouterActor.Command>> routers = CarvedTopology.installRouters(system, model, moe,
                l -> LayerReplicas.empty(l, moe.routed()), limits, metrics);
        PlacementCoordinator.Settings settings = new PlacementCoordinator.Settings(options.plan(), options.policy(),
                options.minDevices(), c.getDuration("cmoe.cluster.placement.settle"),
                c.getDuration("cmoe.cluster.placement.plan-wait"), frameBytes,
                c.getDuration("cmoe.cluster.describe-timeout"), c.getDuration(ExpertWorker.LOAD_TIMEOUT),
                c.getDuration("cmoe.cluster.drain-timeout"), c.getDuration("cmoe.cluster.rebalance.check-interval"),
                c.getDouble("cmoe.cluster.rebalance.imbalance-threshold"),
                c.getLong("cmoe.cluster.rebalance.min-window-tokens"), options.security().secret());
        ServingGate gate = ServingGate.closed("no expert-worker device has joined the cluster yet");
        AtomicReference<String> summary = new AtomicReference<>("cluster: waiting for expert-worker devices");
        ActorRef<PlacementCoordinator.Command> coordinator = system.systemActorOf(PlacementCoordinator.create(
                settings, new PlacementState(shape), routers, watch, metrics, view -> {
                    summary.set(view.summary());
                    if (view.serving()) {
                        gate.open();
                    } else {
                        gate.close(view.summary());
                    }
                }), "placement", Props.empty());
        if (!options.localDevices().isEmpty()) {
            ExpertDevices.start(system, options.localName(), options.localDevices(), shape, source,
                    options.memoryPerDevice(), frameBytes, options.security().secret());
        }
        return new ClusterHead(coordinator, gate, summary,
                c.getDuration("cmoe.cluster.rebalance.rpc-timeout"));
    }

    public ActorRef<PlacementCoordinator.Command> coordinator() {
        return coordinator;
    }

    /** Open exactly while every routed expert has a live host. */
    public ServingGate gate() {
        return gate;
    }

    /** The placement in words, as GetModelInfo reports it. */
    public String summary() {
        return summary.get();
    }

    /** The Admin gRPC service; it refuses to work when the server has no bearer token. */
    public AdminService admin(ActorSystem<?> system, boolean authenticated) {
        return new AdminService(coordinator, system.scheduler(), rpcTimeout, authenticated, this::summary);
    }
}
