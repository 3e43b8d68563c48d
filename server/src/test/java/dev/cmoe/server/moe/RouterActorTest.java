package dev.cmoe.server.moe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.experts.cluster.WireTensor;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.server.metrics.ServerMetrics;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** A layer routed through actors equals the in-process MoE, and fails (never hangs) without its experts. */
@Timeout(120)
class RouterActorTest {
    private static final int HIDDEN = 64;
    private static ActorTestKit kit;
    private static ModelDir carved;
    private static Checkpoint checkpoint;
    private static ExpertWorker.Hosted hosted;
    private static int routed;

    @BeforeAll
    static void start() {
        kit = ActorTestKit.create();
        carved = ModelDir.open(CarvedFixture.dir());
        checkpoint = Checkpoint.open(CarvedFixture.dir());
        routed = carved.moe().orElseThrow().routed();
        List<ExpertId> ids = new ArrayList<>();
        for (int l = 0; l < carved.config().numLayers(); l++) {
            for (int j = 0; j < routed; j++) {
                ids.add(new ExpertId(l, j));
            }
        }
        ActorRef<ExpertWorker.Command> worker = kit.spawn(ExpertWorker.create("cpu-0", Device.cpu(), HIDDEN,
                carved.moe().get().expertSize(), ids, TensorSource.of(checkpoint)));
        TestProbe<ExpertWorker.Hosted> probe = kit.createTestProbe();
        worker.tell(new ExpertWorker.GetHosted(probe.getRef()));
        hosted = probe.receiveMessage(Duration.ofSeconds(10));
    }

    @AfterAll
    static void stop() {
        kit.shutdownTestKit();
        checkpoint.close();
        carved.close();
    }

    private static MoeFeedForward local(int layer) {
        return (MoeFeedForward) carved.model().feedForward(layer);
    }

    private static ActorRef<RouterActor.Command> router(int layer, List<ActorRef<ExpertActor.Command>> experts,
                                                        ActorRef<DeviceCompute.Command> compute, Duration timeout,
                                                        ServerMetrics metrics) {
        return router(layer, LayerReplicas.single(layer, "local/cpu", experts, compute), timeout, metrics);
    }

    private static ActorRef<RouterActor.Command> router(int layer, LayerReplicas table, Duration timeout,
                                                        ServerMetrics metrics) {
        return kit.spawn(RouterActor.create(layer, HIDDEN, DType.F32, local(layer), table,
                RouterActor.Limits.local(timeout), metrics), DispatcherSelector.fromConfig(RouterActor.DISPATCHER));
    }

    /** Probes standing in for the experts' actors: they name the replicas and never get a message. */
    private static List<ActorRef<ExpertActor.Command>> expertRefs() {
        List<ActorRef<ExpertActor.Command>> experts = new ArrayList<>();
        for (int j = 0; j < routed; j++) {
            experts.add(kit.<ExpertActor.Command>createTestProbe().getRef());
        }
        return experts;
    }

    private static float[] floats(WireTensor t) {
        float[] out = new float[t.rows() * t.cols()];
        t.read(0, t.rows(), out, 0);
        return out;
    }

    private static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (2 * r.nextGaussian());
        }
        return v;
    }

    private static RouterActor.Reply ask(ActorRef<RouterActor.Command> router, long step, float[] x, int tokens) {
        TestProbe<RouterActor.Reply> probe = kit.createTestProbe();
        router.tell(new RouterActor.Route(step, x, tokens, probe.getRef()));
        return probe.receiveMessage(Duration.ofSeconds(20));
    }

    @Test
    void routedThroughActorsEqualsTheInProcessForwardForEveryBatchSize() {
        ServerMetrics metrics = new ServerMetrics(new SimpleMeterRegistry());
        Random r = new Random(9);
        long routedTokens = 0;
        for (int l = 0; l < carved.config().numLayers(); l++) {
            List<ActorRef<ExpertActor.Command>> experts = new ArrayList<>();
            for (int j = 0; j < routed; j++) {
                experts.add(hosted.experts().get(new ExpertId(l, j)));
            }
            ActorRef<RouterActor.Command> router = router(l, experts, hosted.compute(), Duration.ofSeconds(15),
                    metrics);
            for (int tokens : new int[] {1, 2, 3, 7, 16, 33}) {
                float[] x = random(r, tokens * HIDDEN);
                float[] want;
                try (NDManager m = NDManager.newBaseManager()) {
                    want = local(l).forward(m.create(x, new Shape(tokens, HIDDEN))).toFloatArray();
                }
                RouterActor.Routed got = assertInstanceOf(RouterActor.Routed.class, ask(router, tokens, x, tokens),
                        "layer " + l + ", " + tokens + " tokens");
                assertEquals(tokens, got.stepId());
                double scale = 1;
                for (float v : want) {
                    scale = Math.max(scale, Math.abs(v));
                }
                for (int i = 0; i < want.length; i++) {
                    assertEquals(want[i], got.output()[i], 1e-5 * scale,
                            "layer " + l + ", " + tokens + " tokens, value " + i);
                }
                routedTokens += (long) tokens * carved.moe().get().active(l);
                // without the shared expert: the asker adding it gets exactly the whole answer
                TestProbe<RouterActor.Reply> probe = kit.createTestProbe();
                router.tell(new RouterActor.Route(1000 + tokens, x, tokens, false, probe.getRef()));
                RouterActor.Routed alone = assertInstanceOf(RouterActor.Routed.class,
                        probe.receiveMessage(Duration.ofSeconds(20)), "layer " + l + ", " + tokens + " tokens");
                try (NDManager m = NDManager.newBaseManager()) {
                    Shape shape = new Shape(tokens, HIDDEN);
                    assertArrayEquals(got.output(), local(l).shared(m.create(x, shape))
                            .add(m.create(alone.output(), shape)).toFloatArray(), "layer " + l + ", " + tokens
                            + " tokens: shared + routed alone");
                }
                routedTokens += (long) tokens * carved.moe().get().active(l);
            }
        }
        double counted = metrics.registry().find("cmoe.expert.tokens").counters().stream()
                .mapToDouble(Counter::count).sum();
        assertEquals(routedTokens, counted, "every routed token is counted once per selected expert");
    }

    @Test
    void eachDeviceGetsOneMessageWithAllRowsOfItsExpertsAndSilenceFailsTheStepWithinTheTimeout() {
        // experts alternate between two devices; each must get one batch for the step, whatever
        // the number of its experts the step selected
        TestProbe<DeviceCompute.Command> even = kit.createTestProbe();
        TestProbe<DeviceCompute.Command> odd = kit.createTestProbe();
        List<ActorRef<ExpertActor.Command>> refs = expertRefs();
        List<List<Replica>> table = new ArrayList<>();
        for (int j = 0; j < routed; j++) {
            table.add(List.of(j % 2 == 0 ? new Replica("w0/cpu", refs.get(j), even.getRef())
                    : new Replica("w1/cpu", refs.get(j), odd.getRef())));
        }
        Duration timeout = Duration.ofMillis(500);
        ActorRef<RouterActor.Command> router = router(0, new LayerReplicas(0, table), timeout,
                ServerMetrics.discarding());
        int tokens = 9;
        float[] x = random(new Random(3), tokens * HIDDEN);
        Routing routing;
        try (NDManager m = NDManager.newBaseManager()) {
            routing = local(0).route(m.create(x, new Shape(tokens, HIDDEN)));
        }
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        long start = System.nanoTime();
        router.tell(new RouterActor.Route(42, x, tokens, reply.getRef()));
        RouterActor.Failed failed = reply.expectMessageClass(RouterActor.Failed.class, Duration.ofSeconds(5));
        double seconds = (System.nanoTime() - start) / 1e9;
        assertEquals(42, failed.stepId());
        assertTrue(failed.reason().contains("did not answer within"), failed.reason());
        assertTrue(seconds >= 0.4 && seconds < 3, "failed after " + seconds + " s with a 0.5 s timeout");
        int devicesUsed = 0;
        for (int parity = 0; parity < 2; parity++) {
            TestProbe<DeviceCompute.Command> device = parity == 0 ? even : odd;
            java.util.Set<Integer> selected = new java.util.TreeSet<>();
            for (int j = parity; j < routed; j += 2) {
                if (routing.rows(j).length > 0) {
                    selected.add(j);
                }
            }
            if (selected.isEmpty()) {
                device.expectNoMessage(Duration.ofMillis(20));
                continue;
            }
            devicesUsed++;
            DeviceCompute.ComputeBatch c = device.expectMessageClass(DeviceCompute.ComputeBatch.class);
            assertEquals(0, c.layer());
            assertEquals(DType.F32, c.rows().dtype());
            java.util.Set<Integer> got = new java.util.TreeSet<>();
            float[] rows = floats(c.rows());
            int at = 0;
            for (int i = 0; i < c.experts().length; i++) {
                int j = c.experts()[i];
                got.add(j);
                int[] want = routing.rows(j);
                assertEquals(want.length, c.counts()[i], "expert " + j + " gets all of its rows in the batch");
                for (int k = 0; k < want.length; k++) {
                    for (int v = 0; v < HIDDEN; v++) {
                        assertEquals(x[want[k] * HIDDEN + v], rows[(at + k) * HIDDEN + v], "expert " + j + " row " + k);
                    }
                }
                at += want.length;
            }
            assertEquals(selected, got, "the device's batch holds exactly its selected experts");
            device.expectNoMessage(Duration.ofMillis(20));
        }
        assertTrue(devicesUsed >= 1);
    }

    @Test
    void aDevicesFailedReplyFailsTheStepAtOnce() {
        TestProbe<DeviceCompute.Command> device = kit.createTestProbe();
        ActorRef<RouterActor.Command> router = router(1, expertRefs(), device.getRef(), Duration.ofSeconds(30),
                ServerMetrics.discarding());
        float[] x = random(new Random(4), HIDDEN);
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        router.tell(new RouterActor.Route(5, x, 1, reply.getRef()));
        DeviceCompute.ComputeBatch c = device.expectMessageClass(DeviceCompute.ComputeBatch.class,
                Duration.ofSeconds(5));
        c.replyTo().tell(new DeviceCompute.BatchFailed(c.stepId(), "device lost"));
        RouterActor.Failed failed = reply.expectMessageClass(RouterActor.Failed.class, Duration.ofSeconds(5));
        assertTrue(failed.reason().contains("device lost"), failed.reason());
    }

    @Test
    void aLayersGatherServesStepAfterStepAndDropsAnEndedStepsLateAnswers() {
        TestProbe<DeviceCompute.Command> device = kit.createTestProbe();
        ActorRef<RouterActor.Command> router = router(1, expertRefs(), device.getRef(), Duration.ofSeconds(30),
                ServerMetrics.discarding());
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        float[] first = random(new Random(7), HIDDEN);
        router.tell(new RouterActor.Route(20, first, 1, reply.getRef()));
        DeviceCompute.ComputeBatch c20 = device.expectMessageClass(DeviceCompute.ComputeBatch.class,
                Duration.ofSeconds(5));
        c20.replyTo().tell(new DeviceCompute.BatchFailed(c20.stepId(), "device hiccup"));
        assertEquals(20, reply.expectMessageClass(RouterActor.Failed.class, Duration.ofSeconds(5)).stepId());

        int tokens = 3;
        float[] x = random(new Random(8), tokens * HIDDEN);
        // the asker reuses the failed step's id: the gather must still tell the two steps apart
        router.tell(new RouterActor.Route(20, x, tokens, reply.getRef()));
        DeviceCompute.ComputeBatch c21 = device.expectMessageClass(DeviceCompute.ComputeBatch.class,
                Duration.ofSeconds(5));
        assertEquals(c20.replyTo(), c21.replyTo(), "the next step goes to the same gather, spawned once");
        // a late answer of the ended step, shaped like this one's, must not be taken for it
        int rows = c21.rows().rows();
        float[] garbage = new float[rows * HIDDEN];
        java.util.Arrays.fill(garbage, 1e6f);
        c21.replyTo().tell(new DeviceCompute.BatchComputed(c20.stepId(),
                WireTensor.writer(DType.F32, rows, HIDDEN).put(garbage, 0, garbage.length).done(), 0));
        // the experts answer with their inputs: the step's output is then shared(x) + Σ g · x
        float[] sent = floats(c21.rows());
        c21.replyTo().tell(new DeviceCompute.BatchComputed(c21.stepId(),
                WireTensor.writer(DType.F32, rows, HIDDEN).put(sent, 0, sent.length).done(), 0));
        RouterActor.Routed got = reply.expectMessageClass(RouterActor.Routed.class, Duration.ofSeconds(5));
        assertEquals(20, got.stepId());
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray in = m.create(x, new Shape(tokens, HIDDEN));
            float[] want = local(1).shared(in).add(local(1).combineStacked(local(1).route(in),
                    m.create(sent, new Shape(rows, HIDDEN)))).toFloatArray();
            assertArrayEquals(want, got.output());
        }
    }

    @Test
    void aLostDevicesLateFailureDoesNotFailRowsAlreadySentElsewhere() {
        TestProbe<DeviceCompute.Command> lost = kit.createTestProbe();
        TestProbe<DeviceCompute.Command> spare = kit.createTestProbe();
        List<ActorRef<ExpertActor.Command>> refs = expertRefs();
        List<ActorRef<ExpertActor.Command>> spares = expertRefs();
        ActorRef<RouterActor.Command> router = router(1, LayerReplicas.single(1, "w1/cpu", refs, lost.getRef()),
                Duration.ofSeconds(30), ServerMetrics.discarding());
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        int tokens = 2;
        float[] x = random(new Random(11), tokens * HIDDEN);
        router.tell(new RouterActor.Route(30, x, tokens, reply.getRef()));
        DeviceCompute.ComputeBatch first = lost.expectMessageClass(DeviceCompute.ComputeBatch.class,
                Duration.ofSeconds(5));
        TestProbe<RouterActor.Updated> updated = kit.createTestProbe();
        router.tell(new RouterActor.UpdateReplicas(LayerReplicas.single(1, "w2/cpu", spares, spare.getRef()),
                java.util.Set.of(lost.getRef()), updated.getRef()));
        updated.expectMessageClass(RouterActor.Updated.class, Duration.ofSeconds(5));
        DeviceCompute.ComputeBatch again = spare.expectMessageClass(DeviceCompute.ComputeBatch.class,
                Duration.ofSeconds(5));
        // the lost device answers after all, with a failure: its rows are the spare's now
        first.replyTo().tell(new DeviceCompute.BatchFailed(first.stepId(), "connection reset"));
        float[] sent = floats(again.rows());
        again.replyTo().tell(new DeviceCompute.BatchComputed(again.stepId(),
                WireTensor.writer(DType.F32, again.rows().rows(), HIDDEN).put(sent, 0, sent.length).done(), 0));
        RouterActor.Routed got = reply.expectMessageClass(RouterActor.Routed.class, Duration.ofSeconds(5));
        assertEquals(30, got.stepId());
    }

    @Test
    void hiddenStatesOfTheWrongShapeFailTheStepNamingTheShape() {
        List<ActorRef<ExpertActor.Command>> layer0 = new ArrayList<>();
        for (int j = 0; j < routed; j++) {
            layer0.add(hosted.experts().get(new ExpertId(0, j)));
        }
        ActorRef<RouterActor.Command> router = router(0, layer0, hosted.compute(), Duration.ofSeconds(30),
                ServerMetrics.discarding());
        RouterActor.Reply r = ask(router, 9, new float[HIDDEN + 1], 1);
        RouterActor.Failed failed = assertInstanceOf(RouterActor.Failed.class, r);
        assertEquals(9, failed.stepId());
        assertEquals("layer 0: expected (1, " + HIDDEN + ") hidden states, got " + (HIDDEN + 1) + " values",
                failed.reason());
        RouterActor.Failed none = assertInstanceOf(RouterActor.Failed.class, ask(router, 10, new float[0], 0));
        assertTrue(none.reason().contains("expected (0, " + HIDDEN + ")"), none.reason());
        // ... and the router goes on routing
        assertInstanceOf(RouterActor.Routed.class, ask(router, 11, random(new Random(2), HIDDEN), 1));
    }

    @Test
    void aDeviceAnsweringTheWrongNumberOfValuesFailsTheStepNotTheProcess() {
        TestProbe<DeviceCompute.Command> device = kit.createTestProbe();
        ActorRef<RouterActor.Command> router = router(1, expertRefs(), device.getRef(), Duration.ofSeconds(30),
                ServerMetrics.discarding());
        float[] x = random(new Random(6), HIDDEN);
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        router.tell(new RouterActor.Route(12, x, 1, reply.getRef()));
        DeviceCompute.ComputeBatch c = device.expectMessageClass(DeviceCompute.ComputeBatch.class,
                Duration.ofSeconds(5));
        int rows = c.rows().rows();
        c.replyTo().tell(new DeviceCompute.BatchComputed(c.stepId(),
                WireTensor.writer(DType.F32, rows, 3).put(new float[rows * 3], 0, rows * 3).done(), 0));
        RouterActor.Failed failed = reply.expectMessageClass(RouterActor.Failed.class, Duration.ofSeconds(5));
        assertTrue(failed.reason().startsWith("layer 1, step 12: device answered (" + rows + ", 3) for " + rows
                + " rows × " + HIDDEN), failed.reason());
    }
}
