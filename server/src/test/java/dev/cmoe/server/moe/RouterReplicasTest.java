package dev.cmoe.server.moe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.cluster.WireTensor;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.server.metrics.ServerMetrics;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.function.Function;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Routers over replicas: least outstanding work chooses the copy, a lost device's rows are sent
 * again to a survivor (same result), no replica at all fails as unavailable within the bound, and
 * a drain waits for the last answer. The devices are probes answered with the in-process experts;
 * each gets one batch per step with the rows of all its experts that the step chose.
 */
@Timeout(120)
class RouterReplicasTest {
    private static final int HIDDEN = 64;
    private static final Duration WAIT = Duration.ofSeconds(20);
    private static ActorTestKit kit;
    private static ModelDir carved;
    private static int routed;

    @BeforeAll
    static void start() {
        kit = ActorTestKit.create();
        carved = ModelDir.open(CarvedFixture.uniformDir());
        routed = carved.moe().orElseThrow().routed();
    }

    @AfterAll
    static void stop() {
        kit.shutdownTestKit();
        carved.close();
    }

    private static MoeFeedForward local() {
        return (MoeFeedForward) carved.model().feedForward(0);
    }

    /** A device standing in for a worker's: a probe for its compute, and one for each expert's actor. */
    private record Dev(String id, TestProbe<DeviceCompute.Command> compute, List<ActorRef<ExpertActor.Command>> experts) {
        Replica replica(int j) {
            return new Replica(id, experts.get(j), compute.getRef());
        }
    }

    private static Dev device(String id) {
        List<ActorRef<ExpertActor.Command>> refs = new ArrayList<>();
        for (int j = 0; j < routed; j++) {
            refs.add(kit.<ExpertActor.Command>createTestProbe().getRef());
        }
        return new Dev(id, kit.createTestProbe(), refs);
    }

    private static LayerReplicas table(Function<Integer, List<Replica>> replicas) {
        List<List<Replica>> t = new ArrayList<>();
        for (int j = 0; j < routed; j++) {
            t.add(replicas.apply(j));
        }
        return new LayerReplicas(0, t);
    }

    private static ActorRef<RouterActor.Command> router(LayerReplicas table, Duration unavailable) {
        return kit.spawn(RouterActor.create(0, HIDDEN, DType.F32, local(), table,
                        new RouterActor.Limits(Duration.ofSeconds(30), unavailable, 0),
                        new ServerMetrics(new SimpleMeterRegistry())),
                DispatcherSelector.fromConfig(RouterActor.DISPATCHER));
    }

    /** Receives one batch on {@code device} and answers it with the in-process experts; returns it. */
    private static DeviceCompute.ComputeBatch answer(Dev device) {
        return reply(assertInstanceOf(DeviceCompute.ComputeBatch.class, device.compute().receiveMessage(WAIT)));
    }

    /** Answers {@code c} with the in-process experts. */
    private static DeviceCompute.ComputeBatch reply(DeviceCompute.ComputeBatch c) {
        float[] rows = new float[c.rows().rows() * HIDDEN];
        c.rows().read(0, c.rows().rows(), rows, 0);
        WireTensor.Writer out = WireTensor.writer(DType.F32, c.rows().rows(), HIDDEN);
        int at = 0;
        try (NDManager m = NDManager.newBaseManager()) {
            for (int i = 0; i < c.experts().length; i++) {
                int n = c.counts()[i];
                float[] o = local().expert(c.experts()[i], m.create(java.util.Arrays.copyOfRange(rows, at * HIDDEN,
                        (at + n) * HIDDEN), new Shape(n, HIDDEN))).toFloatArray();
                out.put(o, 0, o.length);
                at += n;
            }
        }
        c.replyTo().tell(new DeviceCompute.BatchComputed(c.stepId(), out.done(), 0));
        return c;
    }

    private static Set<Integer> experts(DeviceCompute.ComputeBatch c) {
        Set<Integer> out = new HashSet<>();
        for (int j : c.experts()) {
            out.add(j);
        }
        return out;
    }

    private static float[] x(int tokens, long seed) {
        Random r = new Random(seed);
        float[] v = new float[tokens * HIDDEN];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (2 * r.nextGaussian());
        }
        return v;
    }

    private static List<Integer> selected(float[] x, int tokens) {
        List<Integer> out = new ArrayList<>();
        try (NDManager m = NDManager.newBaseManager()) {
            Routing routing = local().route(m.create(x, new Shape(tokens, HIDDEN)));
            for (int j = 0; j < routed; j++) {
                if (routing.rows(j).length > 0) {
                    out.add(j);
                }
            }
        }
        return out;
    }

    private static void assertForward(float[] x, int tokens, RouterActor.Reply reply) {
        RouterActor.Routed got = assertInstanceOf(RouterActor.Routed.class, reply, String.valueOf(reply));
        float[] want;
        try (NDManager m = NDManager.newBaseManager()) {
            want = local().forward(m.create(x, new Shape(tokens, HIDDEN))).toFloatArray();
        }
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got.output()[i], 1e-5 * Math.max(1, Math.abs(want[i])), "value " + i);
        }
    }

    @Test
    void eachStepGoesToTheReplicaWithTheLeastOutstandingWork() {
        Dev a = device("w1/cpu");
        Dev b = device("w2/cpu");
        ActorRef<RouterActor.Command> router = router(table(j -> List.of(a.replica(j), b.replica(j))),
                Duration.ofSeconds(10));
        float[] x = x(1, 3);
        List<Integer> sel = selected(x, 1);
        TestProbe<RouterActor.Reply> first = kit.createTestProbe();
        TestProbe<RouterActor.Reply> second = kit.createTestProbe();
        router.tell(new RouterActor.Route(1, x, 1, first.getRef()));
        router.tell(new RouterActor.Route(2, x, 1, second.getRef()));
        // within a step its two experts go to different devices (the first one is busy with the
        // other), and the second step sends each expert to the copy the first step left idle:
        // one batch per device and step, each with one expert
        java.util.Map<Integer, Set<String>> devicesOf = new java.util.HashMap<>(); // expert -> devices over both steps
        for (Dev d : List.of(a, b)) {
            Set<Long> steps = new HashSet<>();
            for (int i = 0; i < 2; i++) {
                DeviceCompute.ComputeBatch c = answer(d);
                assertEquals(1, c.experts().length, d.id() + ": " + java.util.Arrays.toString(c.experts()));
                steps.add(StepGather.stepOf(c.stepId()));
                devicesOf.computeIfAbsent(c.experts()[0], k -> new HashSet<>()).add(d.id());
            }
            assertEquals(Set.of(1L, 2L), steps, d.id() + " gets one batch of each step");
        }
        for (int j : sel) {
            assertEquals(Set.of("w1/cpu", "w2/cpu"), devicesOf.get(j), "expert " + j + " alternates");
        }
        assertForward(x, 1, first.receiveMessage(WAIT));
        assertForward(x, 1, second.receiveMessage(WAIT));
    }

    @Test
    void aReplicatedExpertGoesToTheDeviceThatTheStepsOtherExpertsLeaveIdle() {
        // every expert lives on w1; only the second selected expert also has a copy on w2 (listed
        // first or second): each step must send it to w2, since w1 is busy with the first expert
        Dev a = device("w1/cpu");
        Dev b = device("w2/cpu");
        float[] x = x(1, 3);
        List<Integer> sel = selected(x, 1);
        assertEquals(2, sel.size(), "top-2 routing of one token");
        int replicated = sel.get(1);
        for (boolean w2First : List.of(true, false, true, false)) {
            ActorRef<RouterActor.Command> router = router(table(j -> {
                if (j != replicated) {
                    return List.of(a.replica(j));
                }
                return w2First ? List.of(b.replica(j), a.replica(j)) : List.of(a.replica(j), b.replica(j));
            }), Duration.ofSeconds(10));
            for (int step = 1; step <= 2; step++) {
                TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
                router.tell(new RouterActor.Route(step, x, 1, reply.getRef()));
                assertEquals(Set.of(sel.get(0)), experts(answer(a)));
                assertEquals(Set.of(replicated), experts(answer(b)));
                assertForward(x, 1, reply.receiveMessage(WAIT));
            }
            a.compute().expectNoMessage(Duration.ofMillis(50));
            kit.stop(router);
        }
    }

    @Test
    void aHotExpertsRowsAreSplitOverItsReplicasAndCombineToTheSameResult() {
        // 16 copies of one token: every row goes to the same two experts, each replicated on w1 and w2
        Dev a = device("w1/cpu");
        Dev b = device("w2/cpu");
        ActorRef<RouterActor.Command> router = router(table(j -> List.of(a.replica(j), b.replica(j))),
                Duration.ofSeconds(10));
        int tokens = 16;
        float[] one = x(1, 9);
        float[] x = new float[tokens * HIDDEN];
        for (int t = 0; t < tokens; t++) {
            System.arraycopy(one, 0, x, t * HIDDEN, HIDDEN);
        }
        List<Integer> sel = selected(x, tokens);
        assertEquals(2, sel.size(), "identical tokens choose the same two experts");
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        router.tell(new RouterActor.Route(7, x, tokens, reply.getRef()));
        // each device gets half of each expert's 16 rows, both experts in its one batch
        for (Dev d : List.of(a, b)) {
            DeviceCompute.ComputeBatch c = answer(d);
            assertEquals(Set.copyOf(sel), experts(c), d.id());
            assertEquals(List.of(tokens / 2, tokens / 2), java.util.Arrays.stream(c.counts()).boxed().toList());
            d.compute().expectNoMessage(Duration.ofMillis(20));
        }
        assertForward(x, tokens, reply.receiveMessage(WAIT));
    }

    @Test
    void aLostDevicesRowsAreSentAgainAndAStepWithoutAnyReplicaWaitsForOne() {
        Dev dead = device("dead/cpu");
        Dev live = device("live/cpu");
        ActorRef<RouterActor.Command> router = router(table(j -> List.of(dead.replica(j))), Duration.ofSeconds(20));
        float[] x = x(5, 4);
        List<Integer> sel = selected(x, 5);
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        router.tell(new RouterActor.Route(1, x, 5, reply.getRef()));
        DeviceCompute.ComputeBatch lost = assertInstanceOf(DeviceCompute.ComputeBatch.class,
                dead.compute().receiveMessage(WAIT)); // never answered
        assertEquals(Set.copyOf(sel), experts(lost));
        TestProbe<RouterActor.Updated> updated = kit.createTestProbe();
        // the device is lost and nothing replaces it yet: the step waits ...
        router.tell(new RouterActor.UpdateReplicas(table(j -> List.of()), Set.of(dead.compute().getRef()), updated.getRef()));
        updated.receiveMessage(WAIT);
        reply.expectNoMessage(Duration.ofMillis(300));
        // ... until a new replica is placed: the rows go there, in one batch, and the result is the same
        router.tell(new RouterActor.UpdateReplicas(table(j -> List.of(live.replica(j))), Set.of(), updated.getRef()));
        updated.receiveMessage(WAIT);
        assertEquals(Set.copyOf(sel), experts(answer(live)));
        assertForward(x, 5, reply.receiveMessage(WAIT));
        live.compute().expectNoMessage(Duration.ofMillis(20));
    }

    @Test
    void aDeviceBackAsANewIncarnationUnderTheLostOnesIdTakesItsRows() {
        // a worker downed and rejoined keeps its --name: only its compute tells the two apart
        Dev old = device("w1/cpu");
        Dev again = device("w1/cpu");
        ActorRef<RouterActor.Command> router = router(table(j -> List.of(old.replica(j))), Duration.ofSeconds(20));
        float[] x = x(4, 9);
        List<Integer> sel = selected(x, 4);
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        router.tell(new RouterActor.Route(1, x, 4, reply.getRef()));
        assertInstanceOf(DeviceCompute.ComputeBatch.class, old.compute().receiveMessage(WAIT)); // never answered
        TestProbe<RouterActor.Updated> updated = kit.createTestProbe();
        router.tell(new RouterActor.UpdateReplicas(table(j -> List.of()), Set.of(old.compute().getRef()),
                updated.getRef()));
        updated.receiveMessage(WAIT);
        router.tell(new RouterActor.UpdateReplicas(table(j -> List.of(again.replica(j))), Set.of(), updated.getRef()));
        updated.receiveMessage(WAIT);
        assertEquals(Set.copyOf(sel), experts(answer(again)));
        assertForward(x, 4, reply.receiveMessage(WAIT));
        old.compute().expectNoMessage(Duration.ofMillis(20));
    }

    @Test
    void withoutAnyReplicaTheStepFailsAsUnavailableWithinTheBound() {
        ActorRef<RouterActor.Command> router = router(table(j -> List.of()), Duration.ofMillis(400));
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        long start = System.nanoTime();
        router.tell(new RouterActor.Route(1, x(3, 5), 3, reply.getRef()));
        RouterActor.Failed f = assertInstanceOf(RouterActor.Failed.class, reply.receiveMessage(WAIT));
        assertTrue(f.unavailable(), f.reason());
        assertTrue(f.reason().contains("no live replica"), f.reason());
        assertTrue(System.nanoTime() - start < Duration.ofSeconds(10).toNanos(), "bounded");
    }

    @Test
    void aDrainIsAnsweredOnceTheDrainedReplicasHaveNoWorkLeft() {
        Dev a = device("w1/cpu");
        ActorRef<RouterActor.Command> router = router(table(j -> List.of(a.replica(j))), Duration.ofSeconds(10));
        float[] x = x(2, 6);
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        router.tell(new RouterActor.Route(1, x, 2, reply.getRef()));
        TestProbe<RouterActor.Drained> drained = kit.createTestProbe();
        DeviceCompute.ComputeBatch pending = assertInstanceOf(DeviceCompute.ComputeBatch.class,
                a.compute().receiveMessage(WAIT));
        router.tell(new RouterActor.Drain(Set.copyOf(a.experts()), drained.getRef()));
        drained.expectNoMessage(Duration.ofMillis(300));
        reply(pending);
        assertForward(x, 2, reply.receiveMessage(WAIT));
        assertEquals(0, drained.receiveMessage(WAIT).layer());
    }
}
