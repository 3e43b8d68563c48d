package dev.cmoe.server.grpc;

import org.awaitility.Awaitility;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.typesafe.config.ConfigFactory;
import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.experts.cluster.ClusterSettings;
import dev.cmoe.experts.cluster.DeviceSpec;
import dev.cmoe.experts.cluster.WireTensor;
import dev.cmoe.experts.cluster.WorkerNode;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.testing.TinyCheckpoint;
import dev.cmoe.proto.v1.AdminGrpc;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.proto.v1.GetModelInfoRequest;
import dev.cmoe.proto.v1.RebalanceRequest;
import dev.cmoe.proto.v1.RebalanceResponse;
import dev.cmoe.server.InferenceServer;
import dev.cmoe.server.cluster.HeadOptions;
import dev.cmoe.server.cluster.PlacementCoordinator;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.CarvedFixture;
import dev.cmoe.server.scheduler.SchedulerConfig;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.MetadataUtils;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A head and three expert workers, each its own actor system on loopback in this JVM, talking
 * Artery TCP with the project's serializer: greedy generation equals the in-process carved
 * model, the largest configured batch crosses nodes intact, and a rebalance that moves every
 * expert while requests stream loses nothing.
 */
@Timeout(300)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ClusterGenerateServiceTest {
    private static final Duration WAIT = Duration.ofSeconds(120);
    private static final int MAX_BATCH_TOKENS = 2048; // × hidden 64 × 4 bytes = 512 KiB, twice Artery's default frame
    private static final String TOKEN = "cluster-test-token";
    private static final ServerMetrics METRICS = new ServerMetrics(new SimpleMeterRegistry());
    private static ModelDir served;
    private static ModelDir reference;
    private static InferenceServer head;
    private static final List<WorkerNode> workers = new ArrayList<>();
    private static ManagedChannel channel;

    @BeforeAll
    static void start() throws Exception {
        served = ModelDir.open(CarvedFixture.dir(), LoadSpec.withoutRoutedExperts());
        reference = ModelDir.open(CarvedFixture.dir());
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        String name = InProcessServerBuilder.generateName();
        head = InferenceServer.startHead(served, SchedulerConfig.defaults().withMaxBatchTokens(MAX_BATCH_TOKENS)
                        .withStreamWindow(4), InProcessServerBuilder.forName(name), METRICS, TOKEN,
                HeadOptions.seed("127.0.0.1", port).withMinDevices(3).withConfig(ConfigFactory.parseString(
                        "cmoe.router.unavailable-timeout = 3s")));
        Metadata auth = new Metadata();
        auth.put(BearerTokenInterceptor.AUTHORIZATION, "Bearer " + TOKEN);
        channel = InProcessChannelBuilder.forName(name).intercept(MetadataUtils.newAttachHeadersInterceptor(auth))
                .build();
        // no worker yet: NOT_SERVING, and Generate is refused at once
        assertEquals(HealthCheckResponse.ServingStatus.NOT_SERVING, health());
        StatusRuntimeException refused = assertThrows(StatusRuntimeException.class, () ->
                GenerationGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
                        .generate(GenerateRequest.newBuilder().setText("The jury").setMaxNewTokens(2).build()).next());
        assertEquals(io.grpc.Status.Code.UNAVAILABLE, refused.getStatus().getCode(), refused.getMessage());
        for (int i = 1; i <= 3; i++) {
            workers.add(WorkerNode.start("127.0.0.1", 0, List.of("127.0.0.1:" + port), "worker-" + i,
                    DeviceSpec.parse("cpu"), CarvedFixture.dir(), 0, MAX_BATCH_TOKENS));
        }
        await("the head serves", () -> health() == HealthCheckResponse.ServingStatus.SERVING);
    }

    @AfterAll
    static void stop() throws Exception {
        if (channel != null) {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
        if (head != null) {
            head.close();
        }
        workers.forEach(WorkerNode::close);
        served.close();
        reference.close();
    }

    private static HealthCheckResponse.ServingStatus health() {
        return HealthGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
                .check(HealthCheckRequest.newBuilder().setService("cmoe.v1.Generation").build()).getStatus();
    }

    private static void await(String what, BooleanSupplier condition) {
        Awaitility.await(what).atMost(WAIT).pollInterval(Duration.ofMillis(100)).until(condition::getAsBoolean);
    }

    private static PlacementCoordinator.PlacementView placement() throws Exception {
        return AskPattern.<PlacementCoordinator.Command, PlacementCoordinator.PlacementView>ask(
                        head.head().coordinator(), PlacementCoordinator.GetPlacement::new, Duration.ofSeconds(10),
                        head.system().scheduler())
                .toCompletableFuture().get(15, TimeUnit.SECONDS);
    }

    private static int[] expected(String prompt, int maxNew) {
        return Generator.generate(reference.model(), reference.tokenizer().encodeIds(prompt, true), maxNew,
                SamplingParams.greedy(), Set.of(), t -> {
                }).tokens();
    }

    /** What a worker's (only) device computed so far, asked on its own node. */
    private static DeviceCompute.Stats stats(WorkerNode w) throws Exception {
        ExpertWorker.Hosted hosted = AskPattern.<ExpertWorker.Command, ExpertWorker.Hosted>ask(
                w.devices().getFirst(), ExpertWorker.GetHosted::new, Duration.ofSeconds(10), w.system().scheduler())
                .toCompletableFuture().get(15, TimeUnit.SECONDS);
        return AskPattern.<DeviceCompute.Command, DeviceCompute.Stats>ask(hosted.compute(),
                DeviceCompute.GetStats::new, Duration.ofSeconds(10), w.system().scheduler())
                .toCompletableFuture().get(15, TimeUnit.SECONDS);
    }

    private static String prompt(int i) {
        String[] words = TinyCheckpoint.TEXT.strip().split("\\s+");
        return String.join(" ", List.of(words).subList(i, i + 1 + 2 * i));
    }

    /** Starts {@code n} greedy requests read slowly (one message at a time), so they stay in flight. */
    private static List<Responses> stream(int n, int maxNew, List<Thread> readers) {
        return stream(n, maxNew, readers, 20);
    }

    /** {@link #stream} asking for one more message every {@code paceMillis}. */
    private static List<Responses> stream(int n, int maxNew, List<Thread> readers, long paceMillis) {
        List<Responses> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Responses r = new Responses(1);
            out.add(r);
            GenerationGrpc.newStub(channel).generate(GenerateRequest.newBuilder().setText(prompt(i))
                    .setMaxNewTokens(maxNew).setIgnoreEos(true).setRequestId("cluster-" + System.nanoTime() + "-" + i)
                    .build(), r);
            Thread reader = Thread.ofVirtual().start(() -> {
                // Awaits the end of the stream, asking for one more message every paceMillis meanwhile.
                long deadline = System.nanoTime() + WAIT.toNanos();
                while (System.nanoTime() < deadline) {
                    try {
                        r.done.get(paceMillis, TimeUnit.MILLISECONDS);
                        return;
                    } catch (java.util.concurrent.TimeoutException slow) {
                        r.request(1);
                    } catch (InterruptedException e) {
                        return;
                    } catch (java.util.concurrent.ExecutionException failed) {
                        return; // the test reads the failure from r
                    }
                }
            });
            readers.add(reader);
        }
        return out;
    }

    @Test
    @Order(1)
    void greedyGenerationOverTheClusterEqualsTheInProcessModel() throws Exception {
        int n = 6;
        List<Responses> streams = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Responses s = Responses.eager();
            streams.add(s);
            GenerationGrpc.newStub(channel).generate(GenerateRequest.newBuilder().setText(prompt(i))
                    .setMaxNewTokens(8 + 4 * i).setIgnoreEos(true).build(), s);
        }
        for (int i = 0; i < n; i++) {
            List<GenerateResponse> messages = streams.get(i).await(WAIT);
            assertTrue(messages.getLast().hasFinal(), "request " + i + " ends with a Final: " + messages.getLast());
            assertArrayEquals(expected(prompt(i), 8 + 4 * i), streams.get(i).tokens(), "request " + i);
        }
        // the experts really are spread: every worker's device computed rows
        Map<String, Double> perDevice = new TreeMap<>();
        METRICS.registry().find("cmoe.device.tokens").counters()
                .forEach(c -> perDevice.merge(c.getId().getTag("device"), c.count(), Double::sum));
        assertEquals(Set.of("worker-1/cpu", "worker-2/cpu", "worker-3/cpu"),
                new TreeSet<>(perDevice.entrySet().stream().filter(e -> e.getValue() > 0).map(Map.Entry::getKey)
                        .toList()), "rows per device: " + perDevice);
        // counted at the workers: one message per device and layer-step (never one per expert),
        // carrying exactly the rows the head sent there
        long steps = METRICS.registry().find("cmoe.step.time").timer().count();
        int layers = reference.config().numLayers();
        long batches = 0;
        for (WorkerNode w : workers) {
            DeviceCompute.Stats st = stats(w);
            assertTrue(st.batches() <= steps * layers, st.device() + " got " + st.batches() + " messages in " + steps
                    + " steps × " + layers + " layers");
            assertEquals(perDevice.get(st.device()), (double) st.rows(), st.device() + " rows");
            batches += st.batches();
        }
        assertTrue(batches >= steps * layers, batches + " messages for " + steps + " steps × " + layers + " layers");
        String info = GenerationGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
                .getModelInfo(GetModelInfoRequest.getDefaultInstance()).getPlacement();
        assertTrue(info.contains("3 expert-worker device(s)") && info.contains("every expert has a live host"), info);
    }

    @Test
    @Order(2)
    void theLargestConfiguredBatchCrossesNodesIntact() throws Exception {
        int hidden = reference.config().hiddenSize();
        int active = reference.moe().orElseThrow().maxActive();
        // the largest batch one device can get: every token of the largest step chose `active`
        // experts (the most any layer selects), all of them there
        int rowsIn = MAX_BATCH_TOKENS * active;
        long bytes = ClusterSettings.tensorMessageBytes(rowsIn, active, hidden, DType.F32);
        assertTrue(bytes > ClusterSettings.DEFAULT_FRAME_BYTES, "the test message exceeds Artery's default frame: "
                + bytes);
        WorkerNode worker = workers.get(1);
        ActorRef<ExpertWorker.Command> local = worker.devices().getFirst();
        // the head's view of that device: a remote ref, so messages go through Artery and the serializer
        ActorRef<ExpertWorker.Command> remote = ActorRefResolver.get(head.system()).resolveActorRef(
                ActorRefResolver.get(worker.system()).toSerializationFormat(local));
        ExpertWorker.Description d = AskPattern.<ExpertWorker.Command, ExpertWorker.Description>ask(remote,
                r -> new ExpertWorker.Describe(ClusterSecret.challenge(), r), Duration.ofSeconds(20), head.system().scheduler())
                .toCompletableFuture().get(30, TimeUnit.SECONDS);
        ExpertId id = d.hosted().getFirst();
        assertTrue(d.compute().path().address().hasGlobalScope(), "a remote compute ref: " + d.compute());
        float[] rows = new float[rowsIn * hidden];
        Random r = new Random(8);
        for (int i = 0; i < rows.length; i++) {
            rows[i] = (float) r.nextGaussian();
        }
        int[] experts = new int[active];
        int[] counts = new int[active];
        java.util.Arrays.fill(experts, id.expert());
        java.util.Arrays.fill(counts, MAX_BATCH_TOKENS);
        WireTensor tensor = WireTensor.writer(DType.F32, rowsIn, hidden).put(rows, 0, rows.length).done();
        DeviceCompute.BatchReply reply = AskPattern.<DeviceCompute.Command, DeviceCompute.BatchReply>ask(d.compute(),
                replyTo -> new DeviceCompute.ComputeBatch(77, id.layer(), experts, counts, tensor, replyTo),
                Duration.ofSeconds(60), head.system().scheduler()).toCompletableFuture().get(70, TimeUnit.SECONDS);
        DeviceCompute.BatchComputed got = assertInstanceOf(DeviceCompute.BatchComputed.class, reply,
                String.valueOf(reply));
        assertEquals(77, got.stepId());
        float[] want;
        try (NDManager m = NDManager.newBaseManager()) {
            MoeFeedForward ffn = (MoeFeedForward) reference.model().feedForward(id.layer());
            want = ffn.expert(id.expert(), m.create(rows, new Shape(rowsIn, hidden))).toFloatArray();
        }
        float[] out = new float[got.outputs().rows() * hidden];
        assertEquals(want.length, out.length);
        got.outputs().read(0, got.outputs().rows(), out, 0);
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], out[i], 1e-5f * Math.max(1, Math.abs(want[i])), "value " + i);
        }
    }

    @Test
    @Order(3)
    void aRebalanceThatMovesEveryExpertWhileRequestsStreamLosesNothing() throws Exception {
        PlacementCoordinator.PlacementView before = placement();
        PlacementPlan current = before.plan();
        List<String> ids = current.devices().stream().map(PlacementPlan.Device::id).sorted().toList();
        assertEquals(3, ids.size());
        // every expert moves to the next device
        List<PlacementPlan.Assignment> moved = current.assignments().stream()
                .map(a -> new PlacementPlan.Assignment(a.layer(), a.expert(),
                        List.of(ids.get((ids.indexOf(a.devices().getFirst()) + 1) % ids.size())), a.load()))
                .toList();
        PlacementPlan target = new PlacementPlan(PlacementPlan.VERSION, current.layers(), current.experts(),
                current.devices(), moved);
        int maxNew = 40;
        List<Thread> readers = new ArrayList<>();
        List<Responses> streams = stream(6, maxNew, readers);
        streams.getFirst().awaitFirst(); // traffic is flowing
        RebalanceResponse response = AdminGrpc.newBlockingStub(channel).withDeadlineAfter(120, TimeUnit.SECONDS)
                .rebalance(RebalanceRequest.newBuilder().setPlanJson(target.toJson()).build());
        int experts = current.layers() * current.experts();
        assertEquals(experts, response.getReplicasAdded());
        assertEquals(experts, response.getReplicasRemoved());
        assertFalse(streams.stream().allMatch(s -> s.done.isDone()), "the rebalance happened during the traffic");
        for (int i = 0; i < streams.size(); i++) {
            List<GenerateResponse> messages = streams.get(i).await(WAIT);
            assertTrue(messages.getLast().hasFinal(), "request " + i + " ends with a Final: " + messages.getLast());
            assertTrue(messages.stream().noneMatch(GenerateResponse::hasError), "request " + i + ": " + messages);
            assertArrayEquals(expected(prompt(i), maxNew), streams.get(i).tokens(), "request " + i);
        }
        // make-before-break ends with the old replicas unloaded: each device hosts exactly its new experts
        Map<String, Integer> want = new HashMap<>();
        target.byDevice().forEach((d, l) -> want.put(d, l.size()));
        await("old replicas retired", () -> {
            try {
                return placement().hosted().equals(want);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        for (WorkerNode w : workers) {
            ExpertWorker.Description d = AskPattern.<ExpertWorker.Command, ExpertWorker.Description>ask(
                            w.devices().getFirst(), r -> new ExpertWorker.Describe(ClusterSecret.challenge(), r), Duration.ofSeconds(10),
                            w.system().scheduler()).toCompletableFuture().get(15, TimeUnit.SECONDS);
            assertEquals(new java.util.HashSet<>(target.byDevice().get(d.deviceId())), new java.util.HashSet<>(d.hosted()),
                    d.deviceId() + " hosts exactly its planned experts");
        }
        readers.forEach(Thread::interrupt);
        double rebalances = METRICS.registry().find("cmoe.cluster.rebalances").tag("trigger", "rpc").counters()
                .stream().mapToDouble(Counter::count).sum();
        assertEquals(1.0, rebalances);
    }

    @Test
    @Order(4)
    void withEveryWorkerGoneRunningRequestsEndUnavailableWithinTheBound() throws Exception {
        List<Thread> readers = new ArrayList<>();
        // read at 10 messages a second, so that no request can finish its 100 tokens (10 s)
        // while the workers' systems shut down, however fast the engine decodes
        List<Responses> streams = stream(3, 100, readers, 100);
        for (Responses s : streams) {
            s.awaitFirst();
        }
        long start = System.nanoTime();
        workers.forEach(w -> w.system().terminate()); // all at once: no capacity is left anywhere
        for (int i = 0; i < streams.size(); i++) {
            io.grpc.Status.Code code;
            try {
                List<GenerateResponse> messages = streams.get(i).await(WAIT);
                code = messages.stream().filter(GenerateResponse::hasError)
                        .map(m -> io.grpc.Status.fromCodeValue(m.getError().getCode()).getCode()).findFirst()
                        .orElse(io.grpc.Status.Code.OK);
            } catch (java.util.concurrent.ExecutionException e) {
                code = io.grpc.Status.fromThrowable(e.getCause()).getCode();
            }
            assertEquals(io.grpc.Status.Code.UNAVAILABLE, code, "request " + i);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        assertTrue(seconds < 60, "ended within the bound: " + seconds + " s");
        readers.forEach(Thread::interrupt);
        await("NOT_SERVING", () -> health() == HealthCheckResponse.ServingStatus.NOT_SERVING);
        StatusRuntimeException refused = assertThrows(StatusRuntimeException.class, () ->
                GenerationGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
                        .generate(GenerateRequest.newBuilder().setText("The jury").setMaxNewTokens(2).build()).next());
        assertEquals(io.grpc.Status.Code.UNAVAILABLE, refused.getStatus().getCode());
        assertTrue(refused.getMessage().contains("without a live host"), refused.getMessage());
    }
}
