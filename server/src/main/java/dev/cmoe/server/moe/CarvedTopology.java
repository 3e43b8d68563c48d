package dev.cmoe.server.moe;

import ai.djl.Device;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.server.metrics.ServerMetrics;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.IntFunction;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * Wires a carved model for serving: an {@link ExpertWorker} for the device with an expert actor
 * per (layer, routed expert), a {@link RouterActor} per layer, and each layer's in-process
 * {@link MoeFeedForward} replaced by an {@link ActorMoeFeedForward}. Kept apart from
 * {@code InferenceServer} so tests can build the same topology on a test kit's system.
 */
public final class CarvedTopology {
    /** The config path of the time a step waits for its experts. */
    public static final String EXPERT_TIMEOUT = "cmoe.router.expert-timeout";

    private CarvedTopology() {
    }

    /**
     * Spawns the topology under {@code system}'s system guardian and installs it into {@code model}.
     * Call before serving: the FFNs are swapped without synchronisation with running steps.
     *
     * @param source the checkpoint's tensors; must stay open while the experts live (restarts reload)
     * @return the placement summary that GetModelInfo reports
     */
    public static String install(ActorSystem<?> system, LlamaModel model, MoeConfig moe, TensorSource source,
                                 Device device, ServerMetrics metrics) {
        return install(system, model, moe, source, device, 0, metrics);
    }

    /**
     * As {@link #install(ActorSystem, LlamaModel, MoeConfig, TensorSource, Device, ServerMetrics)}, the device
     * spending at most {@code memoryBudget} bytes on expert weights (0: not limited); a model whose
     * experts do not fit fails the install naming the budget, before the device runs out of memory.
     */
    public static String install(ActorSystem<?> system, LlamaModel model, MoeConfig moe, TensorSource source,
                                 Device device, long memoryBudget, ServerMetrics metrics) {
        Duration timeout = system.settings().config().getDuration(EXPERT_TIMEOUT);
        int layers = model.config().numLayers();
        int hidden = model.config().hiddenSize();
        List<ExpertId> ids = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            for (int j = 0; j < moe.routed(); j++) {
                ids.add(new ExpertId(l, j));
            }
        }
        String name = device.getDeviceType() + "-" + Math.max(0, device.getDeviceId());
        ActorRef<ExpertWorker.Command> worker = system.systemActorOf(
                ExpertWorker.create(name, device, new ExpertShape(layers, moe.routed(), hidden, moe.expertSize(),
                        model.kernels().dtype()), source, memoryBudget, 0, List.of(), ClusterSecret.OPEN),
                "experts-" + name,
                Props.empty());
        ExpertWorker.Hosted hosted = load(system, worker, ids);
        installRouters(system, model, moe, l -> {
            List<ActorRef<ExpertActor.Command>> experts = new ArrayList<>();
            for (int j = 0; j < moe.routed(); j++) {
                experts.add(hosted.experts().get(new ExpertId(l, j)));
            }
            return LayerReplicas.single(l, "local/" + name, experts, hosted.compute());
        }, RouterActor.Limits.local(timeout), metrics);
        return "actors: worker " + hosted.worker() + " (" + hosted.device() + ") hosts " + hosted.experts().size()
                + " routed experts (" + layers + " layers × " + moe.routed() + "); one router per layer runs the "
                + "router" + (moe.shared() > 0 ? ", the shared expert" : "") + " and the combine";
    }

    /**
     * Spawns a {@link RouterActor} per layer over {@code replicas} (the layer's initial table) and
     * replaces each layer's in-process {@link MoeFeedForward} with an {@link ActorMoeFeedForward}
     * asking it. A model opened with {@code LoadSpec.withoutRoutedExperts()} holds no routed experts;
     * one opened in full (tests) has its copy freed here, since the actors hold them now.
     *
     * @return the routers, index = layer
     */
    public static List<ActorRef<RouterActor.Command>> installRouters(ActorSystem<?> system, LlamaModel model,
                                                                     MoeConfig moe,
                                                                     IntFunction<LayerReplicas> replicas,
                                                                     RouterActor.Limits limits, ServerMetrics metrics) {
        int hidden = model.config().hiddenSize();
        List<ActorRef<RouterActor.Command>> routers = new ArrayList<>();
        for (int l = 0; l < model.config().numLayers(); l++) {
            FeedForward ffn = model.feedForward(l);
            if (!(ffn instanceof MoeFeedForward local)) {
                throw new IllegalStateException("layer " + l + "'s FFN is a " + ffn.getClass().getSimpleName()
                        + ", not an in-process MoeFeedForward to serve through actors");
            }
            ActorRef<RouterActor.Command> router = system.systemActorOf(
                    RouterActor.create(l, hidden, model.kernels().dtype(), local, replicas.apply(l), limits,
                            metrics), "router-layer-" + l,
                    DispatcherSelector.fromConfig(RouterActor.DISPATCHER));
            // the model's wait outlasts the router's own, so the router's precise failure comes first
            Duration wait = (limits.expert().compareTo(limits.unavailable()) > 0 ? limits.expert()
                    : limits.unavailable()).plusSeconds(5);
            model.replaceFeedForward(l, new ActorMoeFeedForward(l, router, system.scheduler(), wait, local));
            local.releaseRoutedExperts(); // a no-op under the serving load spec; frees a full load's copy
            routers.add(router);
        }
        return routers;
    }

    /**
     * Loads every expert of {@code ids} on {@code worker} and returns what it hosts. The worker fails
     * the load itself when no expert has become ready for its load timeout, so a large model takes
     * as long as its loading progresses; this side's own bound (that timeout per expert) only
     * guards against a worker that never answers.
     */
    private static ExpertWorker.Hosted load(ActorSystem<?> system, ActorRef<ExpertWorker.Command> worker,
                                            List<ExpertId> ids) {
        Duration stall = system.settings().config().getDuration(ExpertWorker.LOAD_TIMEOUT);
        Duration bound = stall.multipliedBy(Math.max(1, ids.size())).plusSeconds(10);
        try {
            ExpertWorker.LoadResult r = AskPattern.<ExpertWorker.Command, ExpertWorker.LoadResult>ask(worker,
                    reply -> new ExpertWorker.Load(1, ids, reply), bound, system.scheduler())
                    .toCompletableFuture().get(bound.toSeconds() + 1, TimeUnit.SECONDS);
            if (!r.ok()) {
                throw new IllegalStateException("expert worker " + worker.path() + " could not load the model's "
                        + ids.size() + " routed experts: " + r.failure());
            }
            return AskPattern.<ExpertWorker.Command, ExpertWorker.Hosted>ask(worker, ExpertWorker.GetHosted::new,
                    Duration.ofSeconds(30), system.scheduler()).toCompletableFuture().get(31, TimeUnit.SECONDS);
        } catch (InterruptedException | java.util.concurrent.ExecutionException
                 | java.util.concurrent.TimeoutException e) {
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            throw new IllegalStateException("expert worker " + worker.path() + " did not report its experts: " + e, e);
        }
    }
}
