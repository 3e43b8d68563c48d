package dev.cmoe.server.moe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.server.metrics.ServerMetrics;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.ArrayList;
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
 * a drain waits for the last answer. The replicas are probes answered with the in-process experts.
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
        carved = ModelDir.open(CarvedFixture.dir());
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

    /** One probe per routed expert, standing in for one replica of it. */
    private static List<TestProbe<ExpertActor.Command>> probes() {
        List<TestProbe<ExpertActor.Command>> out = new ArrayList<>();
        for (int j = 0; j < routed; j++) {
            out.add(kit.createTestProbe());
        }
        return out;
    }

    private static LayerReplicas table(Function<Integer, List<Replica>> replicas) {
        List<List<Replica>> t = new ArrayList<>();
        for (int j = 0; j < routed; j++) {
            t.add(replicas.apply(j));
        }
        return new LayerReplicas(0, t);
    }

    private static ActorRef<RouterActor.Command> router(LayerReplicas table, Duration unavailable) {
        return kit.spawn(RouterActor.create(0, HIDDEN, local(), table,
                        new RouterActor.Limits(Duration.ofSeconds(30), unavailable, 0),
                        new ServerMetrics(new SimpleMeterRegistry())),
                DispatcherSelector.fromConfig(RouterActor.DISPATCHER));
    }

    /** Receives expert j's Compute on {@code probe} and answers it with the in-process expert. */
    private static void answer(TestProbe<ExpertActor.Command> probe, int j) {
        ExpertActor.Compute c = assertInstanceOf(ExpertActor.Compute.class, probe.receiveMessage(WAIT));
        float[] out;
        try (NDManager m = NDManager.newBaseManager()) {
            out = local().expert(j, m.create(c.rows(), new Shape(c.count(), HIDDEN))).toFloatArray();
        }
        c.replyTo().tell(new ExpertActor.Computed(c.stepId(), new ExpertId(0, j), out));
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
        List<TestProbe<ExpertActor.Command>> a = probes();
        List<TestProbe<ExpertActor.Command>> b = probes();
        ActorRef<RouterActor.Command> router = router(table(j -> List.of(new Replica("w1/cpu", a.get(j).getRef()),
                new Replica("w2/cpu", b.get(j).getRef()))), Duration.ofSeconds(10));
        float[] x = x(1, 3);
        List<Integer> sel = selected(x, 1);
        TestProbe<RouterActor.Reply> first = kit.createTestProbe();
        TestProbe<RouterActor.Reply> second = kit.createTestProbe();
        router.tell(new RouterActor.Route(1, x, 1, first.getRef()));
        router.tell(new RouterActor.Route(2, x, 1, second.getRef()));
        for (int j : sel) {
            // the first step's copy is busy when the second arrives: the second goes to the other copy
            ExpertActor.Compute ca = assertInstanceOf(ExpertActor.Compute.class, a.get(j).receiveMessage(WAIT));
            ExpertActor.Compute cb = assertInstanceOf(ExpertActor.Compute.class, b.get(j).receiveMessage(WAIT));
            assertEquals(Set.of(1L, 2L), Set.of(StepGather.stepOf(ca.stepId()), StepGather.stepOf(cb.stepId())),
                    "expert " + j);
            for (ExpertActor.Compute c : List.of(ca, cb)) {
                try (NDManager m = NDManager.newBaseManager()) {
                    c.replyTo().tell(new ExpertActor.Computed(c.stepId(), new ExpertId(0, j),
                            local().expert(j, m.create(c.rows(), new Shape(c.count(), HIDDEN))).toFloatArray()));
                }
            }
        }
        assertForward(x, 1, first.receiveMessage(WAIT));
        assertForward(x, 1, second.receiveMessage(WAIT));
    }

    @Test
    void aReplicatedExpertGoesToTheDeviceThatTheStepsOtherExpertsLeaveIdle() {
        // every expert lives on w1; only the second selected expert also has a copy on w2 (listed
        // first or second): each step must send it to w2, since w1 is busy with the first expert
        List<TestProbe<ExpertActor.Command>> a = probes();
        List<TestProbe<ExpertActor.Command>> b = probes();
        float[] x = x(1, 3);
        List<Integer> sel = selected(x, 1);
        assertEquals(2, sel.size(), "top-2 routing of one token");
        int replicated = sel.get(1);
        for (boolean w2First : List.of(true, false, true, false)) {
            ActorRef<RouterActor.Command> router = router(table(j -> {
                Replica one = new Replica("w1/cpu", a.get(j).getRef());
                if (j != replicated) {
                    return List.of(one);
                }
                Replica two = new Replica("w2/cpu", b.get(j).getRef());
                return w2First ? List.of(two, one) : List.of(one, two);
            }), Duration.ofSeconds(10));
            for (int step = 1; step <= 2; step++) {
                TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
                router.tell(new RouterActor.Route(step, x, 1, reply.getRef()));
                answer(a.get(sel.get(0)), sel.get(0));
                answer(b.get(replicated), replicated);
                assertForward(x, 1, reply.receiveMessage(WAIT));
            }
            a.get(replicated).expectNoMessage(Duration.ofMillis(50));
            kit.stop(router);
        }
    }

    @Test
    void aHotExpertsRowsAreSplitOverItsReplicasAndCombineToTheSameResult() {
        // 16 copies of one token: every row goes to the same two experts, each replicated on w1 and w2
        List<TestProbe<ExpertActor.Command>> a = probes();
        List<TestProbe<ExpertActor.Command>> b = probes();
        ActorRef<RouterActor.Command> router = router(table(j -> List.of(new Replica("w1/cpu", a.get(j).getRef()),
                new Replica("w2/cpu", b.get(j).getRef()))), Duration.ofSeconds(10));
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
        for (int j : sel) {
            // each device gets half of each expert's 16 rows: 8 + 8, one part each
            for (TestProbe<ExpertActor.Command> probe : List.of(a.get(j), b.get(j))) {
                ExpertActor.Compute c = assertInstanceOf(ExpertActor.Compute.class, probe.receiveMessage(WAIT));
                assertEquals(tokens / 2, c.count(), "expert " + j);
                try (NDManager m = NDManager.newBaseManager()) {
                    c.replyTo().tell(new ExpertActor.Computed(c.stepId(), new ExpertId(0, j),
                            local().expert(j, m.create(c.rows(), new Shape(c.count(), HIDDEN))).toFloatArray()));
                }
            }
        }
        assertForward(x, tokens, reply.receiveMessage(WAIT));
    }

    @Test
    void aLostDevicesRowsAreSentAgainAndAStepWithoutAnyReplicaWaitsForOne() {
        List<TestProbe<ExpertActor.Command>> dead = probes();
        List<TestProbe<ExpertActor.Command>> live = probes();
        ActorRef<RouterActor.Command> router = router(table(j -> List.of(new Replica("dead/cpu",
                dead.get(j).getRef()))), Duration.ofSeconds(20));
        float[] x = x(5, 4);
        List<Integer> sel = selected(x, 5);
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        router.tell(new RouterActor.Route(1, x, 5, reply.getRef()));
        for (int j : sel) {
            assertInstanceOf(ExpertActor.Compute.class, dead.get(j).receiveMessage(WAIT)); // never answered
        }
        TestProbe<RouterActor.Updated> updated = kit.createTestProbe();
        // the device is lost and nothing replaces it yet: the step waits ...
        router.tell(new RouterActor.UpdateReplicas(table(j -> List.of()), Set.of("dead/cpu"), updated.getRef()));
        updated.receiveMessage(WAIT);
        reply.expectNoMessage(Duration.ofMillis(300));
        // ... until a new replica is placed: the rows go there, and the result is the same
        router.tell(new RouterActor.UpdateReplicas(table(j -> List.of(new Replica("live/cpu", live.get(j).getRef()))),
                Set.of(), updated.getRef()));
        updated.receiveMessage(WAIT);
        for (int j : sel) {
            answer(live.get(j), j);
        }
        assertForward(x, 5, reply.receiveMessage(WAIT));
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
        List<TestProbe<ExpertActor.Command>> a = probes();
        ActorRef<RouterActor.Command> router = router(table(j -> List.of(new Replica("w1/cpu", a.get(j).getRef()))),
                Duration.ofSeconds(10));
        float[] x = x(2, 6);
        List<Integer> sel = selected(x, 2);
        TestProbe<RouterActor.Reply> reply = kit.createTestProbe();
        router.tell(new RouterActor.Route(1, x, 2, reply.getRef()));
        TestProbe<RouterActor.Drained> drained = kit.createTestProbe();
        java.util.Set<ActorRef<ExpertActor.Command>> all = new java.util.HashSet<>();
        a.forEach(p -> all.add(p.getRef()));
        List<ExpertActor.Compute> pending = new ArrayList<>();
        for (int j : sel) {
            pending.add(assertInstanceOf(ExpertActor.Compute.class, a.get(j).receiveMessage(WAIT)));
        }
        router.tell(new RouterActor.Drain(all, drained.getRef()));
        drained.expectNoMessage(Duration.ofMillis(300));
        for (int i = 0; i < sel.size(); i++) {
            ExpertActor.Compute c = pending.get(i);
            int j = sel.get(i);
            try (NDManager m = NDManager.newBaseManager()) {
                c.replyTo().tell(new ExpertActor.Computed(c.stepId(), new ExpertId(0, j),
                        local().expert(j, m.create(c.rows(), new Shape(c.count(), HIDDEN))).toFloatArray()));
            }
        }
        assertForward(x, 2, reply.receiveMessage(WAIT));
        assertEquals(0, drained.receiveMessage(WAIT).layer());
    }
}
