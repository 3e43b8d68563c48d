package dev.cmoe.deploy.cli;

import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import dev.cmoe.experts.cluster.ClusterSecurity;
import dev.cmoe.experts.cluster.ClusterSettings;
import dev.cmoe.experts.cluster.DeviceSpec;
import dev.cmoe.experts.placement.DefaultPlacement;
import dev.cmoe.experts.placement.LoadAwarePlacement;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.experts.placement.PlacementPolicy;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.server.cluster.HeadOptions;
import dev.cmoe.server.InferenceServer;
import dev.cmoe.server.http.ChatTemplate;
import dev.cmoe.server.metrics.MetricsHttpServer;
import dev.cmoe.server.metrics.ProcessMetrics;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.scheduler.SchedulerConfig;
import io.grpc.InsecureServerCredentials;
import io.grpc.ServerCredentials;
import io.grpc.TlsServerCredentials;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code cmoe serve}: serves a model over gRPC (and, with {@code --http-port}, the OpenAI-compatible
 * HTTP API through the same scheduler) with continuous batching until interrupted.
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve a model over gRPC (cmoe.v1.Generation, health, reflection) and, with --http-port, the"
                + " OpenAI-compatible HTTP API, until Ctrl-C.")
public final class ServeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Model directory.")
    Path model;

    @Option(names = "--host", defaultValue = "127.0.0.1",
            description = "Address to listen on (default: ${DEFAULT-VALUE}; 0.0.0.0 exposes the server).")
    String host;

    @Option(names = "--port", defaultValue = "50051", description = "gRPC port; 0 picks a free one (default: ${DEFAULT-VALUE}).")
    int port;

    @Mixin
    SchedulerOptions scheduler;

    @Mixin
    HttpApiOptions httpApi;

    @Option(names = "--metrics-port", defaultValue = "-1",
            description = "Serve Prometheus metrics at http://METRICS-HOST:PORT/metrics; -1 = off (default).")
    int metricsPort;

    @Option(names = "--metrics-host", defaultValue = "127.0.0.1",
            description = "Address the metrics endpoint binds (default: ${DEFAULT-VALUE}, loopback even when --host "
                    + "is public).")
    String metricsHost;

    @Option(names = "--metrics-auth", description = "The metrics endpoint requires the bearer token of "
            + "--auth-token-file too.")
    boolean metricsAuth;

    @Option(names = "--tls-cert", description = "PEM certificate chain; with --tls-key, serve TLS only.")
    Path tlsCert;

    @Option(names = "--tls-key", description = "PEM private key (PKCS#8) of --tls-cert.")
    Path tlsKey;

    @Mixin
    AuthTokenOption auth;

    @Mixin
    DtypeOption dtype;

    @Option(names = "--role", description = "Cluster role: head (gRPC front end, scheduler, attention, shared experts, "
            + "routers; routed experts on the expert workers that join). Without it: single-node serving.")
    String role;

    @Mixin
    ClusterNodeOptions cluster;

    @Option(names = "--plan", description = "Placement plan JSON (cmoe plan) to start from; default: round-robin "
            + "over the devices that join.")
    Path plan;

    @Option(names = "--spare-slots", paramLabel = "N",
            description = "With --role head: replicas beyond one per expert that the head's own rebalances may add."
                    + " 0 (default) rebalances by moving experts from the most to the least loaded device, no new"
                    + " replicas; N > 0 re-plans with the load-aware planner of `cmoe plan` (EPLB: the hottest"
                    + " experts get up to N extra replicas, each layer's device load is evened out), using fewer"
                    + " spares when the devices' memory cannot hold N.")
    Integer spareSlots;

    @Option(names = "--min-devices", defaultValue = "1",
            description = "Devices to wait for before the first placement, without --plan (default: ${DEFAULT-VALUE}).")
    int minDevices;

    @Option(names = "--rebalance-threshold", description = "With --role head: max/mean device load above which the"
            + " head re-places experts by itself (checked every 30 s); 0 = only on request (cmoe rebalance)"
            + " (default: 1.25).")
    Double rebalanceThreshold;

    /** A started server with its model and metrics endpoint; closing stops all three. */
    public record Running(ModelDir dir, InferenceServer server, MetricsHttpServer metrics) implements AutoCloseable {
        public int port() {
            return server.port();
        }

        /** The HTTP API's port, or -1 when it is off. */
        public int httpPort() {
            return server.http() == null ? -1 : server.http().port();
        }

        @Override
        public void close() throws InterruptedException {
            try {
                server.close();
            } finally {
                if (metrics != null) {
                    metrics.close();
                }
                dir.close();
            }
        }
    }

    @Override
    public Integer call() throws Exception {
        CountDownLatch stopped = new CountDownLatch(1);
        Running running = start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                running.close();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                stopped.countDown();
            }
        }, "cmoe-serve-shutdown"));
        System.err.printf("cmoe serve: %s%s on %s:%d (%s%s)%s%s%n", running.dir().config().modelType(),
                role == null ? "" : " (cluster head, seed " + String.join(",", cluster.seeds) + ")", host,
                running.port(), tlsCert != null ? "TLS" : "plaintext",
                auth.file != null ? ", bearer token required" : "",
                running.server().http() != null ? "; OpenAI API on http://" + host + ":" + running.httpPort()
                        + "/v1 as model '" + httpApi.modelName(model) + "'" : "",
                running.metrics() != null ? "; metrics on http://" + metricsHost + ":" + running.metrics().port() + "/metrics"
                        : "");
        stopped.await();
        return 0;
    }

    /** Opens the model and starts serving it; the caller closes what it gets. */
    public Running start() throws IOException {
        checkClusterFlags();
        if ((tlsCert == null) != (tlsKey == null)) {
            throw new IllegalArgumentException("--tls-cert and --tls-key go together; got only "
                    + (tlsCert != null ? "--tls-cert" : "--tls-key"));
        }
        if (httpApi.httpPort != null && tlsCert != null) {
            throw new IllegalArgumentException("--http-port serves plain HTTP; with --tls-cert put a TLS-terminating"
                    + " proxy in front of it, or leave --http-port out");
        }
        String token = auth.read();
        if (metricsAuth && token == null) {
            throw new IllegalArgumentException("--metrics-auth needs the token of --auth-token-file");
        }
        ServerCredentials credentials = tlsCert != null
                ? TlsServerCredentials.create(tlsCert.toFile(), tlsKey.toFile())
                : InsecureServerCredentials.create();
        SchedulerConfig config = scheduler.config();
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        ProcessMetrics.bindTo(registry);
        HeadOptions head = role == null ? null : headOptions(); // its files are read before the model is opened
        DeviceSpec expertDevice = role == null ? singleNodeDevice() : null;
        // a carved model's routed experts are loaded by the expert actors alone, never twice
        ModelDir dir = ModelDir.open(model, dtype.apply(LoadSpec.withoutRoutedExperts()));
        InferenceServer server = null;
        try {
            NettyServerBuilder builder = NettyServerBuilder.forAddress(new InetSocketAddress(host, port), credentials);
            // a carved model (cmoe block) is served through expert and router actors: in this JVM, or
            // with --role head on the cluster's expert workers
            if (role == null && cluster.devices != null && dir.moe().isEmpty()) {
                throw new IllegalArgumentException("--devices places routed experts, and " + model
                        + " is dense (no cmoe block in config.json)");
            }
            server = role == null
                    ? InferenceServer.start(dir, config, builder, new ServerMetrics(registry), token,
                            expertDevice.device(), expertDevice.memoryBudget(cluster.memoryPerDevice))
                    : InferenceServer.startHead(dir, config, builder, new ServerMetrics(registry), token, head);
            if (httpApi.httpPort != null) {
                server.startHttp(host, httpApi.httpPort, httpApi.modelName(model), ChatTemplate.load(dir.dir()));
            }
            MetricsHttpServer metrics = metricsPort >= 0
                    ? MetricsHttpServer.start(registry, metricsHost, metricsPort, metricsAuth ? token : null) : null;
            return new Running(dir, server, metrics);
        } catch (IOException | RuntimeException e) {
            try {
                if (server != null) {
                    server.close();
                }
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
            }
            dir.close();
            throw e;
        }
    }

    private void checkClusterFlags() {
        if (role == null) {
            String stray = cluster.seeds != null ? "--cluster-seed" : cluster.host != null ? "--cluster-host"
                    : cluster.port != null ? "--cluster-port" : plan != null ? "--plan"
                    : rebalanceThreshold != null ? "--rebalance-threshold" : spareSlots != null ? "--spare-slots"
                    : cluster.anySecurity() ? "--cluster-key-store/--cluster-trust-store/--cluster-secret-file"
                    : null;
            if (stray != null) {
                throw new IllegalArgumentException(stray + " needs --role head");
            }
            return;
        }
        if (!role.equals(ClusterSettings.ROLE_HEAD)) {
            throw new IllegalArgumentException("--role " + role + " is not a serve role; use --role head (expert "
                    + "workers run `cmoe worker`)");
        }
        if (cluster.seeds == null || cluster.seeds.isEmpty()) {
            throw new IllegalArgumentException("--role head needs --cluster-seed HOST:PORT");
        }
        if (rebalanceThreshold != null && !(rebalanceThreshold == 0 || rebalanceThreshold >= 1)) {
            throw new IllegalArgumentException("--rebalance-threshold must be 0 (off) or a max/mean load >= 1, got "
                    + rebalanceThreshold);
        }
        if (spareSlots != null && spareSlots < 0) {
            throw new IllegalArgumentException("--spare-slots must be ≥ 0, got " + spareSlots);
        }
    }

    /**
     * Where a single node's routed experts run: the CPU, or the one device {@code --devices} names
     * (several need the placement of {@code --role head}).
     */
    private DeviceSpec singleNodeDevice() {
        if (cluster.memoryPerDevice < 0) {
            throw new IllegalArgumentException("--memory-per-device must be ≥ 0, got " + cluster.memoryPerDevice);
        }
        List<DeviceSpec> devices = DeviceSpec.parse(cluster.devices == null ? "cpu" : cluster.devices);
        if (devices.size() != 1) {
            throw new IllegalArgumentException("--devices " + cluster.devices + ": without --role head the routed"
                    + " experts go to one device; spreading them over several is the head's placement (--role head"
                    + " --cluster-seed 127.0.0.1:PORT --devices " + cluster.devices + ")");
        }
        return devices.get(0);
    }

    /** The head's rebalancing policy: greedy moves, or EPLB with replicas when spare slots are asked for. */
    PlacementPolicy placementPolicy() {
        return spareSlots == null || spareSlots == 0 ? new DefaultPlacement(64) : new LoadAwarePlacement(spareSlots);
    }

    private HeadOptions headOptions() {
        Map.Entry<String, Integer> seed = ClusterSettings.hostPort(cluster.seeds.getFirst());
        PlacementPlan placement = plan == null ? null : PlacementPlan.read(plan);
        List<DeviceSpec> local = cluster.devices == null ? List.of() : DeviceSpec.parse(cluster.devices);
        HeadOptions options = new HeadOptions(cluster.host != null ? cluster.host : seed.getKey(),
                cluster.port != null ? cluster.port : seed.getValue(), cluster.seeds, placement, placementPolicy(),
                minDevices, local, cluster.name != null ? cluster.name : "head", cluster.memoryPerDevice);
        ClusterSecurity security = cluster.security();
        if (!security.weakness().isEmpty()) {
            System.err.println("cmoe serve: WARNING: " + security.weakness());
        }
        options = options.withSecurity(security);
        return rebalanceThreshold == null ? options : options.withConfig(ConfigFactory.empty().withValue(
                "cmoe.cluster.rebalance.imbalance-threshold", ConfigValueFactory.fromAnyRef(rebalanceThreshold)));
    }
}
