package dev.cmoe.experts.placement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.experts.ExpertId;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** The head's EPLB policy against DefaultPlacement's moves, under memory limits, and across rebalances. */
class LoadAwarePlacementTest {
    private static final long BYTES = 1000;
    private static final int LAYERS = 4;
    private static final int EXPERTS = 8;

    private static List<PlacementPlan.Device> devices(int n, long memory) {
        return IntStream.range(0, n).mapToObj(i -> new PlacementPlan.Device("w" + i + "/cpu", memory)).toList();
    }

    /** In layer l, expert (3·l) mod 8 gets 100 tokens and the others 3 to 9: one expert carries ~70%. */
    private static double[][] skewed() {
        double[][] load = new double[LAYERS][EXPERTS];
        for (int l = 0; l < LAYERS; l++) {
            for (int e = 0; e < EXPERTS; e++) {
                load[l][e] = 3 + (e * 5 + l) % 7;
            }
            load[l][hot(l)] = 100;
        }
        return load;
    }

    private static int hot(int layer) {
        return (3 * layer) % EXPERTS;
    }

    private static PlacementStats stats(PlacementPlan plan, double[][] load) {
        return PlacementStats.of(plan, ExpertLoads.ofCounts("test", load),
                ExpertMemory.uniform(LAYERS, EXPERTS, BYTES));
    }

    private static void checkShape(PlacementPlan plan, List<PlacementPlan.Device> devices) {
        assertEquals(LAYERS, plan.layers());
        assertEquals(EXPERTS, plan.experts());
        assertEquals(devices, plan.devices());
        for (int l = 0; l < LAYERS; l++) {
            for (int e = 0; e < EXPERTS; e++) {
                List<String> on = plan.devicesFor(new ExpertId(l, e));
                assertTrue(!on.isEmpty() && new HashSet<>(on).size() == on.size(), "(" + l + ", " + e + ") on " + on);
            }
        }
    }

    private static int replicas(PlacementPlan plan) {
        return plan.assignments().stream().mapToInt(a -> a.devices().size()).sum();
    }

    @Test
    void replicatesTheHotExpertsAndBeatsMovesInEveryLayer() {
        List<PlacementPlan.Device> devices = devices(4, 0);
        double[][] load = skewed();
        PlacementPlan current = DefaultPlacement.roundRobin(LAYERS, EXPERTS, devices, BYTES);
        PlacementPlan eplb = new LoadAwarePlacement(4).place(current, devices, load, BYTES);
        PlacementPlan moves = new DefaultPlacement(64).place(current, devices, load, BYTES);
        checkShape(eplb, devices);
        assertEquals(LAYERS * EXPERTS + 4, replicas(eplb));
        PlacementStats e = stats(eplb, load);
        PlacementStats m = stats(moves, load);
        for (int l = 0; l < LAYERS; l++) {
            // the four spares split the four hot experts (the highest loads per replica), one each
            assertEquals(2, eplb.devicesFor(new ExpertId(l, hot(l))).size(), "layer " + l);
            // moves cannot split an expert: its ~70% of the layer stays on one device
            assertTrue(m.layerImbalance(l) > 2.5, "moves, layer " + l + ": " + m.layerImbalance(l));
            assertTrue(e.layerImbalance(l) < m.layerImbalance(l) * 0.6,
                    "layer " + l + ": eplb " + e.layerImbalance(l) + " vs moves " + m.layerImbalance(l));
        }
        assertTrue(e.stepImbalance() < m.stepImbalance() * 0.6, e.stepImbalance() + " vs " + m.stepImbalance());
        // with nothing measured yet, the first placement is round-robin like DefaultPlacement's
        assertEquals(current, new LoadAwarePlacement(4).place(null, devices, load, BYTES));
    }

    @Test
    void sparesThatDoNotFitTheMemoryAreGivenUpNotFailed() {
        double[][] load = skewed();
        // 3 devices × 11 experts = 33 slots: one per expert (32) and a single spare
        List<PlacementPlan.Device> devices = devices(3, 11 * BYTES);
        PlacementPlan current = DefaultPlacement.roundRobin(LAYERS, EXPERTS, devices, BYTES);
        PlacementPlan plan = new LoadAwarePlacement(20).place(current, devices, load, BYTES);
        checkShape(plan, devices);
        assertEquals(LAYERS * EXPERTS + 1, replicas(plan));
        plan.byDevice().forEach((d, hosted) -> assertTrue(hosted.size() <= 11, d + " holds " + hosted.size()));
        // more spares than one replica per device allows: capped at experts × (devices − 1)
        PlacementPlan two = new LoadAwarePlacement(1000).place(current, devices(2, 0), load, BYTES);
        assertEquals(2 * LAYERS * EXPERTS, replicas(two));
        // no spare fits at all: plain planning
        List<PlacementPlan.Device> exact = devices(4, 8 * BYTES);
        assertEquals(LAYERS * EXPERTS, replicas(new LoadAwarePlacement(8).place(
                DefaultPlacement.roundRobin(LAYERS, EXPERTS, exact, BYTES), exact, load, BYTES)));
        // only a model that does not fit without replicas fails
        assertThrows(IllegalArgumentException.class, () -> new LoadAwarePlacement(8).place(current, devices(3, 10 * BYTES),
                load, BYTES));
        assertThrows(IllegalArgumentException.class, () -> new LoadAwarePlacement(-1));
    }

    @Test
    void aRebalanceKeepsReplicasWhereTheyAreWhenTheDevicesOnlySwapRoles() {
        List<PlacementPlan.Device> devices = devices(4, 0);
        double[][] load = skewed();
        LoadAwarePlacement policy = new LoadAwarePlacement(4);
        PlacementPlan first = policy.place(DefaultPlacement.roundRobin(LAYERS, EXPERTS, devices, BYTES), devices, load,
                BYTES);
        // the same layout with every device's replicas one device further on: the planner's own labels would
        // move every replica, the renaming none
        List<PlacementPlan.Assignment> rotated = first.assignments().stream().map(a -> new PlacementPlan.Assignment(
                a.layer(), a.expert(), a.devices().stream().map(d -> "w" + ((d.charAt(1) - '0' + 1) % 4) + "/cpu")
                        .toList(), a.load())).toList();
        PlacementPlan current = new PlacementPlan(PlacementPlan.VERSION, LAYERS, EXPERTS, devices, rotated);
        PlacementPlan again = policy.place(current, devices, load, BYTES);
        Map<ExpertId, List<String>> now = current.byExpert();
        again.byExpert().forEach((id, on) -> assertEquals(new HashSet<>(now.get(id)), new HashSet<>(on), id.toString()));
    }
}
