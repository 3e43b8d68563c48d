package dev.cmoe.server;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import ai.djl.Device;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.tokenizer.StreamDecoder;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.proto.v1.ModelInfo;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.cluster.ClusterSettings;
import dev.cmoe.server.cluster.ClusterHead;
import dev.cmoe.server.cluster.HeadOptions;
import dev.cmoe.server.grpc.GenerateService;
import dev.cmoe.server.grpc.ServingGate;
import io.grpc.BindableService;
import dev.cmoe.server.grpc.GrpcServer;
import dev.cmoe.server.grpc.RequestValidator;
import dev.cmoe.server.http.ChatTemplate;
import dev.cmoe.server.http.HttpApiServer;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.ActorMoeFeedForward;
import dev.cmoe.server.moe.CarvedTopology;
import dev.cmoe.server.scheduler.LlamaRunner;
import dev.cmoe.server.scheduler.ModelRunner;
import dev.cmoe.server.scheduler.SchedulerActor;
import dev.cmoe.server.scheduler.SchedulerConfig;
import io.grpc.ServerBuilder;
import java.io.IOException;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;

/**
 * A running server, wired: the actor system with its scheduler ({@link ServerSystem}), the model runner
 * and the gRPC server. The `serve` command and the end-to-end tests start it the same way; only
 * the transport differs.
 */
public final class InferenceServer implements AutoCloseable {
    private static final Config PEKKO = ConfigFactory.parseString("""
            pekko.loggers = ["org.apache.pekko.event.slf4j.Slf4jLogger"]
            pekko.logging-filter = "org.apache.pekko.event.slf4j.Slf4jLoggingFilter"
            pekko.log-dead-letters-during-shutdown = off
            pekko.log-dead-letters = 0
            # close() stops gRPC before the actors; Pekko's own JVM hook would race it.
            pekko.coordinated-shutdown.run-by-jvm-shutdown-hook = off
            """);

    private final ActorSystem<Void> system;
    private final ActorRef<SchedulerActor.Command> scheduler;
    private final GrpcServer grpc;
    private final List<AutoCloseable> resources; // closed once the actors have stopped

    private final ClusterHead head; // null unless this is a cluster head
    private final RequestValidator validator;
    private final Supplier<ModelInfo> info;
    private final ServingGate gate;
    private final ServerMetrics metrics;
    private final String authToken;
    private volatile HttpApiServer http; // null unless startHttp was called

    private InferenceServer(ServerSystem node, GrpcServer grpc,
                            List<AutoCloseable> resources, ClusterHead head, RequestValidator validator,
                            Supplier<ModelInfo> info, ServingGate gate, ServerMetrics metrics, String authToken) {
        this.system = node.system();
        this.scheduler = node.scheduler();
        this.grpc = grpc;
        this.resources = resources;
        this.head = head;
        this.validator = validator;
        this.info = info;
        this.gate = gate;
        this.metrics = metrics;
        this.authToken = authToken;
    }

    /**
     * Serves the OpenAI-compatible HTTP API on {@code host:port} too (0 picks a free port), through
     * this server's scheduler, request rules, gate, bearer token and metrics; closed with it, first.
     *
     * @param modelName the model id clients name (and /v1/models lists)
     * @param template renders chat messages (the model's tokenizer_config.json, or the plain one)
     */
    public synchronized HttpApiServer startHttp(String host, int port, String modelName, ChatTemplate template)
            throws IOException {
        if (http != null) {
            throw new IllegalStateException("the HTTP API already listens on port " + http.port());
        }
        http = HttpApiServer.start(host, port, new HttpApiServer.Wiring(system, scheduler, validator.rules(), template,
                modelName, info, gate, metrics, authToken));
        return http;
    }

    /** The HTTP API, or null when it was not started. */
    public HttpApiServer http() {
        return http;
    }

    /**
     * Starts serving {@code model} through {@code builder}.
     *
     * @param tokenizer encodes text prompts and decodes streamed text; null serves token ids only
     * @param authToken bearer token required on every call, or null
     */
    public static InferenceServer start(LlamaModel model, TextTokenizer tokenizer, SchedulerConfig config,
                                        ServerBuilder<?> builder, ServerMetrics metrics, String authToken)
            throws IOException {
        return start(new LlamaRunner(model), model.config(), denseInfo(model.config()), tokenizer, config, builder,
                metrics, authToken);
    }

    /**
     * Starts serving with any {@link ModelRunner} (a carved model's, or a test's that injects
     * failures); {@code info} is what GetModelInfo reports.
     */
    public static InferenceServer start(ModelRunner runner, ModelConfig modelConfig, ModelInfo info,
                                        TextTokenizer tokenizer, SchedulerConfig config, ServerBuilder<?> builder,
                                        ServerMetrics metrics, String authToken) throws IOException {
        ServerSystem system = system(runner, tokenizer, config, metrics);
        return serve(system, modelConfig, info, tokenizer, builder, metrics, authToken, List.of());
    }

    /**
     * Starts serving the model of {@code dir}: in-process for a dense checkpoint; for a carved one
     * (a {@code cmoe} block) through actors: an expert worker for the CPU hosting every (layer,
     * routed expert), a router per layer, and each layer's FFN replaced by an
     * {@link ActorMoeFeedForward}. {@code dir} stays the caller's to close, after this server.
     */
    public static InferenceServer start(ModelDir dir, SchedulerConfig config, ServerBuilder<?> builder,
                                        ServerMetrics metrics, String authToken) throws IOException {
        return start(dir, config, builder, metrics, authToken, Device.cpu(), 0);
    }

    /**
     * As {@link #start(ModelDir, SchedulerConfig, ServerBuilder, ServerMetrics, String)}, a carved model's
     * routed experts on {@code expertDevice}, within {@code memoryBudget} bytes (0: not limited).
     */
    public static InferenceServer start(ModelDir dir, SchedulerConfig config, ServerBuilder<?> builder,
                                        ServerMetrics metrics, String authToken, Device expertDevice,
                                        long memoryBudget) throws IOException {
        if (dir.moe().isEmpty()) {
            return start(dir.model(), dir.tokenizer(), config, builder, metrics, authToken);
        }
        MoeConfig moe = dir.moe().get();
        ServerSystem system = system(new LlamaRunner(dir.model()), dir.tokenizer(), config,
                metrics);
        // The experts read their weights from the checkpoint again whenever one restarts, so it
        // stays open (memory-mapped, read-only) until the actors have stopped.
        Checkpoint checkpoint = null;
        try {
            checkpoint = Checkpoint.open(dir.dir());
            String placement = CarvedTopology.install(system.system(), dir.model(), moe, TensorSource.of(checkpoint),
                    expertDevice, memoryBudget, metrics);
            ModelInfo info = denseInfo(dir.config()).toBuilder().setRoutedExperts(moe.routed())
                    .setActiveExperts(moe.active()).setSharedExperts(moe.shared()).setPlacement(placement).build();
            return serve(system, dir.config(), info, dir.tokenizer(), builder, metrics, authToken,
                    List.of(checkpoint));
        } catch (IOException | RuntimeException e) {
            system.system().terminate();
            if (checkpoint != null) {
                checkpoint.close();
            }
            throw e;
        }
    }

    /**
     * Starts the head of a cluster serving the carved model of {@code dir}: the scheduler,
     * attention, shared experts and a router per layer run here; the routed experts are placed on
     * the expert-worker devices that join ({@code options}). The health service says NOT_SERVING,
     * and Generate answers UNAVAILABLE, until every (layer, expert) has a live host.
     * {@code dir} stays the caller's to close, after this server.
     */
    public static InferenceServer startHead(ModelDir dir, SchedulerConfig config, ServerBuilder<?> builder,
                                            ServerMetrics metrics, String authToken, HeadOptions options)
            throws IOException {
        MoeConfig moe = dir.moe().orElseThrow(() -> new IllegalArgumentException("model " + dir.dir()
                + " is dense (no cmoe block in config.json): a cluster head serves a carved model's experts"));
        ExpertShape shape = ExpertShape.of(dir.config(), moe, dir.model().kernels().dtype());
        int frame = ClusterSettings.frameBytesFor(config.maxBatchTokens(), moe.maxActive(), shape.hidden());
        List<String> roles = options.localDevices().isEmpty() ? List.of(ClusterSettings.ROLE_HEAD)
                : List.of(ClusterSettings.ROLE_HEAD, ClusterSettings.ROLE_WORKER);
        ClusterSettings cluster = new ClusterSettings(options.host(), options.port(), options.seeds(), roles, frame,
                options.security().tls());
        Checkpoint checkpoint = options.localDevices().isEmpty() ? null : Checkpoint.open(dir.dir());
        ServerSystem system = null;
        try {
            system = system(new LlamaRunner(dir.model()), dir.tokenizer(), config, metrics,
                    options.overrides().withFallback(PEKKO).withFallback(cluster.config()).resolve());
            ClusterHead head = ClusterHead.install(system.system(), dir.model(), moe, shape, options, frame,
                    checkpoint == null ? null : TensorSource.of(checkpoint), metrics);
            ModelInfo base = denseInfo(dir.config()).toBuilder().setRoutedExperts(moe.routed())
                    .setActiveExperts(moe.active()).setSharedExperts(moe.shared()).build();
            return serve(system, dir.config(), () -> base.toBuilder().setPlacement(head.summary()).build(),
                    dir.tokenizer(), builder, metrics, authToken,
                    checkpoint == null ? List.of() : List.of(checkpoint), head.gate(), head);
        } catch (IOException | RuntimeException e) {
            if (system != null) {
                system.system().terminate();
            }
            if (checkpoint != null) {
                checkpoint.close();
            }
            throw e;
        }
    }

    private static ServerSystem system(ModelRunner runner, TextTokenizer tokenizer, SchedulerConfig config,
                                       ServerMetrics metrics) {
        return system(runner, tokenizer, config, metrics, PEKKO.withFallback(ConfigFactory.load()));
    }

    private static ServerSystem system(ModelRunner runner, TextTokenizer tokenizer, SchedulerConfig config,
                                       ServerMetrics metrics, Config pekko) {
        Supplier<StreamDecoder> decoders = tokenizer != null ? tokenizer::streamDecoder
                : () -> StreamDecoder.ofBytes(id -> null);
        return ServerSystem.start(SchedulerActor.create(runner, config, metrics, decoders), pekko);
    }

    /** The cluster head's wiring (placement coordinator, gate), or null for a single-node server. */
    public ClusterHead head() {
        return head;
    }

    /** Starts gRPC over a running {@code system}; {@code resources} are closed after the actors stop. */
    private static InferenceServer serve(ServerSystem system, ModelConfig modelConfig,
                                         ModelInfo info, TextTokenizer tokenizer, ServerBuilder<?> builder,
                                         ServerMetrics metrics, String authToken, List<AutoCloseable> resources)
            throws IOException {
        return serve(system, modelConfig, () -> info, tokenizer, builder, metrics, authToken, resources,
                ServingGate.opened(), null);
    }

    /**
     * @param info asked at every GetModelInfo (a cluster's placement changes)
     * @param gate the health service follows it; closed, Generate answers UNAVAILABLE
     * @param head the cluster head whose Admin service is served too, or null
     */
    private static InferenceServer serve(ServerSystem system, ModelConfig modelConfig,
                                         Supplier<ModelInfo> info, TextTokenizer tokenizer, ServerBuilder<?> builder,
                                         ServerMetrics metrics, String authToken, List<AutoCloseable> resources,
                                         ServingGate gate, ClusterHead head) throws IOException {
        try {
            Set<Integer> eos = new HashSet<>(modelConfig.eosTokenIds());
            if (tokenizer != null && tokenizer.eosId() >= 0) {
                eos.add(tokenizer.eosId());
            }
            RequestValidator validator = new RequestValidator(tokenizer, modelConfig.vocabSize(),
                    modelConfig.contextLength(), eos);
            GenerateService service = new GenerateService(system.system(), system.scheduler(), validator, info,
                    metrics, gate);
            List<BindableService> services = head == null ? List.of(service)
                    : List.of(service, head.admin(system.system(), authToken != null));
            return new InferenceServer(system, new GrpcServer(builder, services, authToken, gate).start(), resources,
                    head, validator, info, gate, metrics, authToken);
        } catch (IOException | RuntimeException e) {
            system.system().terminate();
            throw e;
        }
    }

    /** What GetModelInfo reports for a dense checkpoint. */
    public static ModelInfo denseInfo(ModelConfig c) {
        String arch = c.raw().has("architectures") && c.raw().getAsJsonArray("architectures").size() > 0
                ? c.raw().getAsJsonArray("architectures").get(0).getAsString() : c.modelType();
        return ModelInfo.newBuilder().setArchitecture(arch).setModelType(c.modelType()).setLayers(c.numLayers())
                .setHiddenSize(c.hiddenSize()).setVocabSize(c.vocabSize()).setContextLength(c.contextLength())
                .setPlacement("dense: every layer's FFN runs in-process with attention").build();
    }

    /** The scheduler, for tests that watch its state. */
    public ActorRef<SchedulerActor.Command> scheduler() {
        return scheduler;
    }

    /** The actor system (the cluster node of a head), for tests that ask actors or watch the cluster. */
    public ActorSystem<Void> system() {
        return system;
    }

    public int port() {
        return grpc.port();
    }

    /**
     * Drains the HTTP API (new completions get 503, running ones get a few seconds), stops the gRPC
     * server (likewise), then the actors.
     */
    @Override
    public void close() throws InterruptedException {
        try {
            HttpApiServer h = http;
            if (h != null) {
                h.close(java.time.Duration.ofSeconds(5));
            }
            grpc.stop(5);
        } finally {
            system.terminate();
            try {
                system.getWhenTerminated().toCompletableFuture().get(10, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
                throw new IllegalStateException("the actor system did not stop within 10 s: " + e, e);
            } finally {
                for (AutoCloseable r : resources) {
                    try {
                        r.close();
                    } catch (Exception e) {
                        throw new IllegalStateException("could not close " + r + ": " + e, e);
                    }
                }
            }
        }
    }
}
