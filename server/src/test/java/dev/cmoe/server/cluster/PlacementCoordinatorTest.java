package dev.cmoe.server.cluster;

import org.apache.pekko.actor.testkit.typed.javadsl.LoggingTestKit;
import org.awaitility.Awaitility;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import com.typesafe.config.ConfigFactory;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.placement.DefaultPlacement;
import dev.cmoe.experts.placement.LoadAwarePlacement;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.experts.placement.PlacementPolicy;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.Replica;
import dev.cmoe.server.moe.RouterActor;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.FloatBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.receptionist.Receptionist;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The placement coordinator on a one-node cluster with real device workers (random weights) and
 * stand-in routers that record what they are told: the first placement waits for its devices, a
 * departing device's experts are re-placed and the routers hear of the loss, and an uneven
 * measured load rebalances by itself onto a device that joined later, retiring old replicas only
 * after the routers switched away from them and drained them; a head with the EPLB policy adds
 * replicas of the hot experts.
 */
@Timeout(120)
class PlacementCoordinatorTest {
    private static final ExpertShape SHAPE = new ExpertShape(2, 4, 8, 4);
    private static final Duration WAIT = Duration.ofSeconds(40);
    private static ActorTestKit kit;

    /** A fresh one-node cluster per test: the receptionist's registrations must not leak between tests. */
    @BeforeEach
    void start() {
        kit = ActorTestKit.create("cmoe", ConfigFactory.parseString("""
                pekko.actor.provider = cluster
                pekko.remote.artery.canonical.hostname = 127.0.0.1
                pekko.remote.artery.canonical.port = 0
                pekko.cluster.jmx.multi-mbeans-in-same-jvm = on
                """).withFallback(ConfigFactory.load()));
        Cluster cluster = Cluster.get(kit.system());
        cluster.manager().tell(Join.create(cluster.selfMember().address()));
        // the tests wait for the coordinator's INFO lines; the shared logback-test.xml keeps WARN
        ((ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(PlacementCoordinator.class))
                .setLevel(ch.qos.logback.classic.Level.INFO);
    }

    @AfterEach
    void stop() {
        kit.shutdownTestKit();
    }

    private static final TensorSource RANDOM = (name, shape) -> {
        Random r = new Random(name.hashCode());
        float[] v = new float[(int) (shape[0] * shape[1])];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return FloatBuffer.wrap(v);
    };

    private static ActorRef<ExpertWorker.Command> device(String id) {
        return device(id, 0);
    }

    /** A device whose node accepts frames of {@code frameBytes} (0: in-process, no frames). */
    private static ActorRef<ExpertWorker.Command> device(String id, int frameBytes) {
        ActorRef<ExpertWorker.Command> ref = kit.spawn(ExpertWorker.create(id, Device.cpu(), SHAPE, RANDOM, 0,
                frameBytes, List.of(), ClusterSecret.OPEN), id.replace('/', '-'));
        kit.system().receptionist().tell(Receptionist.register(ExpertWorker.SERVICE_KEY, ref));
        return ref;
    }

    /** What the stand-in routers were told, in order. */
    private static final List<RouterActor.Command> told = new CopyOnWriteArrayList<>();

    private static Behavior<RouterActor.Command> router() {
        return Behaviors.receiveMessage(m -> {
            told.add(m);
            if (m instanceof RouterActor.UpdateReplicas u) {
                u.replyTo().tell(new RouterActor.Updated(u.replicas().layer()));
            } else if (m instanceof RouterActor.Drain d) {
                d.replyTo().tell(new RouterActor.Drained(0));
            }
            return Behaviors.same();
        });
    }

    private record Head(ActorRef<PlacementCoordinator.Command> coordinator,
                        AtomicReference<PlacementCoordinator.PlacementView> view, ServerMetrics metrics) {
    }

    private static Head head(String name, double threshold) {
        return head(name, threshold, null);
    }

    private static Head head(String name, double threshold, PlacementPlan plan) {
        return head(name, threshold, plan, new DefaultPlacement(16));
    }

    private static Head head(String name, double threshold, PlacementPlan plan, PlacementPolicy policy) {
        return head(name, threshold, plan, policy, 0);
    }

    private static Head head(String name, double threshold, PlacementPlan plan, PlacementPolicy policy,
                             int requiredFrameBytes) {
        ServerMetrics metrics = new ServerMetrics(new SimpleMeterRegistry());
        List<ActorRef<RouterActor.Command>> routers = new ArrayList<>();
        for (int l = 0; l < SHAPE.layers(); l++) {
            routers.add(kit.spawn(router(), name + "-router-" + l));
        }
        AtomicReference<PlacementCoordinator.PlacementView> view = new AtomicReference<>();
        PlacementCoordinator.Settings settings = new PlacementCoordinator.Settings(plan, policy, 2,
                Duration.ofMillis(300), Duration.ofSeconds(3), requiredFrameBytes, Duration.ofSeconds(5),
                Duration.ofSeconds(20),
                Duration.ofSeconds(10), Duration.ofMillis(300), threshold, 50, ClusterSecret.OPEN);
        ActorRef<PlacementCoordinator.Command> c = kit.spawn(PlacementCoordinator.create(settings,
                new PlacementState(SHAPE), routers, metrics, view::set), name);
        return new Head(c, view, metrics);
    }

    /** Whether the head has published a view that serves; before its first publication there is none. */
    private static boolean serving(Head head) {
        PlacementCoordinator.PlacementView v = head.view().get();
        return v != null && v.serving();
    }

    private static void await(String what, BooleanSupplier condition) {
        Awaitility.await(what).atMost(WAIT).pollInterval(Duration.ofMillis(50)).until(condition::getAsBoolean);
    }

    @Test
    void placesOnceEnoughDevicesJoinedAndReplacesTheExpertsOfOneThatLeaves() throws Exception {
        told.clear();
        Head head = head("placement-a", 0);
        ActorRef<ExpertWorker.Command> a1 = device("a1/cpu");
        await("a1 joined", () -> head.view().get() != null && head.view().get().hosted().containsKey("a1/cpu"));
        // Alone, a1 outlasts the 300 ms settle time several times over without a placement ...
        Awaitility.await("unplaced with one device").during(Duration.ofSeconds(1)).atMost(WAIT)
                .until(() -> !head.view().get().placed() && !serving(head));
        // ... and the one first placement, an explicit event, is over both devices.
        LoggingTestKit.info("first placement over 2 devices").expect(kit.system(), () -> {
            device("a2/cpu");
            await("serving", () -> serving(head));
            return null;
        });
        assertEquals(Map.of("a1/cpu", 4, "a2/cpu", 4), head.view().get().hosted());

        kit.system().receptionist().tell(Receptionist.deregister(ExpertWorker.SERVICE_KEY, a1));
        await("a1's experts moved to a2", () -> serving(head)
                && head.view().get().hosted().equals(Map.of("a2/cpu", 8)));
        // a1's compute, as the tables of the first placement named it
        ActorRef<DeviceCompute.Command> a1Compute = told.stream()
                .filter(m -> m instanceof RouterActor.UpdateReplicas).map(m -> (RouterActor.UpdateReplicas) m)
                .flatMap(u -> u.replicas().experts().stream()).flatMap(List::stream)
                .filter(r -> r.device().equals("a1/cpu")).map(Replica::compute).findFirst().orElseThrow();
        assertTrue(told.stream().anyMatch(m -> m instanceof RouterActor.UpdateReplicas u
                && u.lost().equals(Set.of(a1Compute))), "the routers heard of the loss");
        RouterActor.UpdateReplicas last = (RouterActor.UpdateReplicas) told.stream()
                .filter(m -> m instanceof RouterActor.UpdateReplicas).reduce((x, y) -> y).orElseThrow();
        assertTrue(last.replicas().experts().stream().allMatch(rs -> rs.size() == 1
                && rs.getFirst().device().equals("a2/cpu")), String.valueOf(last.replicas()));
    }

    @Test
    void anUnevenMeasuredLoadRebalancesOntoALaterDeviceMakeBeforeBreak() throws Exception {
        told.clear();
        Head head = head("placement-b", 1.2);
        device("b1/cpu");
        device("b2/cpu");
        await("serving", () -> serving(head));
        device("b3/cpu");
        await("b3 joined", () -> head.view().get().hosted().containsKey("b3/cpu"));
        // A join places nothing on the new device; only a rebalance (counted, and none yet) would.
        assertEquals(0, head.view().get().hosted().get("b3/cpu"), "a new device waits for the next rebalance");
        assertEquals(0, head.metrics().registry().find("cmoe.cluster.rebalances").counters().stream()
                .mapToDouble(c -> c.count()).sum(), "no rebalance before the traffic");
        // traffic: every expert routes the same number of tokens, so b3's empty slot is the imbalance
        for (int l = 0; l < SHAPE.layers(); l++) {
            for (int j = 0; j < SHAPE.routed(); j++) {
                head.metrics().expertTokens(l, j).increment(100);
            }
        }
        await("rebalanced onto b3", () -> head.view().get().hosted().getOrDefault("b3/cpu", 0) > 0);
        assertEquals(1.0, head.metrics().registry().get("cmoe.cluster.rebalances").tag("trigger", "imbalance")
                .counter().count());
        await("old replicas retired", () -> head.view().get().hosted().values().stream().mapToInt(i -> i).sum()
                == SHAPE.layers() * SHAPE.routed());
        // make-before-break: what was drained had first been dropped from the tables the routers use
        int drainAt = -1;
        for (int i = 0; i < told.size(); i++) {
            if (told.get(i) instanceof RouterActor.Drain) {
                drainAt = i;
            }
        }
        assertTrue(drainAt > 0, "old replicas were drained before they were unloaded");
        RouterActor.Drain drain = (RouterActor.Drain) told.get(drainAt);
        for (int i = drainAt - 1; i >= 0; i--) {
            if (told.get(i) instanceof RouterActor.UpdateReplicas u) {
                Set<ActorRef<ExpertActor.Command>> inUse = new java.util.HashSet<>();
                u.replicas().experts().forEach(rs -> rs.stream().map(Replica::ref).forEach(inUse::add));
                assertTrue(drain.replicas().stream().noneMatch(inUse::contains),
                        "a drained replica was still in a table the routers use");
                break;
            }
        }
    }

    @Test
    void aPlanIsFollowedWithItsReplicasAndItsMissingDeviceIsCoveredBySurvivors() throws Exception {
        told.clear();
        // c3 never joins: after the plan wait its experts go to c1 and c2; (0, 0) has two replicas
        List<PlacementPlan.Device> devices = List.of(new PlacementPlan.Device("c1/cpu", 0),
                new PlacementPlan.Device("c2/cpu", 0), new PlacementPlan.Device("c3/cpu", 0));
        List<PlacementPlan.Assignment> as = new ArrayList<>();
        for (int l = 0; l < SHAPE.layers(); l++) {
            for (int j = 0; j < SHAPE.routed(); j++) {
                List<String> on = l == 0 && j == 0 ? List.of("c1/cpu", "c2/cpu")
                        : List.of(devices.get((l * SHAPE.routed() + j) % 3).id());
                as.add(new PlacementPlan.Assignment(l, j, on, 0.25));
            }
        }
        PlacementPlan plan = new PlacementPlan(1, SHAPE.layers(), SHAPE.routed(), devices, as);
        Head head = head("placement-c", 0, plan);
        // The placement that finally comes says it waited out the plan's devices: an explicit event.
        LoggingTestKit.warn("plan devices [c3/cpu] did not join within").expect(kit.system(), () -> {
            device("c1/cpu");
            device("c2/cpu");
            await("c1 and c2 joined", () -> head.view().get() != null
                    && head.view().get().hosted().keySet().containsAll(Set.of("c1/cpu", "c2/cpu")));
            assertFalse(head.view().get().placed(), "waits for the plan's devices");
            await("serving without c3", () -> serving(head));
            return null;
        });
        PlacementPlan now = head.view().get().plan();
        assertEquals(List.of("c1/cpu", "c2/cpu"), now.devicesFor(new ExpertId(0, 0)));
        for (PlacementPlan.Assignment a : plan.assignments()) {
            if (!a.devices().contains("c3/cpu")) {
                assertEquals(a.devices(), now.devicesFor(a.id()), "kept where the plan put it: " + a.id());
            }
        }
        RouterActor.UpdateReplicas layer0 = (RouterActor.UpdateReplicas) told.stream()
                .filter(m -> m instanceof RouterActor.UpdateReplicas u && u.replicas().layer() == 0)
                .reduce((x, y) -> y).orElseThrow();
        assertEquals(Set.of("c1/cpu", "c2/cpu"), Set.copyOf(layer0.replicas().of(0).stream().map(Replica::device)
                .toList()), "both replicas of (0, 0) are in the router's table");
    }

    @Test
    void aLoadAwareHeadReplicatesTheHotExpertsWhenItRebalances() throws Exception {
        told.clear();
        Head head = head("placement-d", 0, null, new LoadAwarePlacement(2));
        device("d1/cpu");
        device("d2/cpu");
        await("serving", () -> serving(head));
        // expert 0 of each layer routes almost every token: moves alone cannot split it
        for (int l = 0; l < SHAPE.layers(); l++) {
            for (int j = 0; j < SHAPE.routed(); j++) {
                head.metrics().expertTokens(l, j).increment(j == 0 ? 1000 : 10);
            }
        }
        TestProbe<PlacementCoordinator.RebalanceResult> probe = kit.createTestProbe();
        head.coordinator().tell(new PlacementCoordinator.Rebalance(null, false, "test", probe.ref()));
        PlacementCoordinator.RebalanceResult r = probe.receiveMessage(WAIT);
        assertEquals("", r.error());
        assertEquals(2, r.added() - r.removed(), "one spare replica each for (0, 0) and (1, 0)");
        assertTrue(r.imbalanceAfter() < r.imbalanceBefore(), r.imbalanceBefore() + " -> " + r.imbalanceAfter());
        for (int l = 0; l < SHAPE.layers(); l++) {
            assertEquals(Set.of("d1/cpu", "d2/cpu"), Set.copyOf(r.plan().devicesFor(new ExpertId(l, 0))));
        }
        await("replicas serve", () -> head.view().get().hosted().values().stream().mapToInt(i -> i).sum()
                == SHAPE.layers() * SHAPE.routed() + 2);
    }

    @Test
    void aDeviceWhoseFramesAreTooSmallForTheHeadsBatchesIsRefusedAndAnotherServes() {
        told.clear();
        Head head = head("placement-f", 0, null, new DefaultPlacement(16), 600_000);
        LoggingTestKit.error("refusing device f1/cpu: its node accepts frames of 262144 bytes, the head's batches "
                + "need 600000").expect(kit.system(), () -> device("f1/cpu", 262_144));
        device("f2/cpu", 600_000);
        device("f3/cpu", 1 << 20);
        await("serving on f2 and f3", () -> serving(head));
        assertEquals(Map.of("f2/cpu", 4, "f3/cpu", 4), head.view().get().hosted(), "f1 hosts nothing, not even a slot");
    }
}
