package dev.cmoe.experts.placement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.experts.ExpertId;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The head's own placement: round-robin within memory, and rebalancing moves that lower the maximum load. */
class DefaultPlacementTest {
    private static final long BYTES = 1000;

    private static List<PlacementPlan.Device> devices(int n, long memory) {
        return java.util.stream.IntStream.range(0, n)
                .mapToObj(i -> new PlacementPlan.Device("w" + i + "/cpu", memory)).toList();
    }

    @Test
    void roundRobinSpreadsEvenlyAndRespectsMemory() {
        PlacementPlan p = DefaultPlacement.roundRobin(2, 7, devices(3, 0), BYTES);
        Map<String, List<ExpertId>> by = p.byDevice();
        assertEquals(List.of(5, 5, 4), by.values().stream().map(List::size).sorted(java.util.Comparator.reverseOrder())
                .toList());
        // device 0 may hold only 2 experts: the others take the rest
        List<PlacementPlan.Device> tight = List.of(new PlacementPlan.Device("a/cpu", 2 * BYTES),
                new PlacementPlan.Device("b/cpu", 0));
        PlacementPlan q = DefaultPlacement.roundRobin(2, 7, tight, BYTES);
        assertEquals(2, q.byDevice().get("a/cpu").size());
        assertEquals(12, q.byDevice().get("b/cpu").size());
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> DefaultPlacement.roundRobin(2, 7, devices(2, 3 * BYTES), BYTES));
        assertTrue(e.getMessage().contains("do not fit"), e.getMessage());
    }

    @Test
    void rebalancingASkewedLoadLowersTheImbalanceAndFillsANewDevice() {
        Random r = new Random(4);
        double[][] load = new double[2][8];
        for (double[] row : load) {
            for (int e = 0; e < row.length; e++) {
                row[e] = 1 + Math.pow(r.nextDouble(), 4) * 50; // heavy-tailed: a few hot experts
            }
        }
        PlacementPlan start = DefaultPlacement.roundRobin(2, 8, devices(3, 0), BYTES);
        // a fourth device joins empty
        List<PlacementPlan.Device> four = devices(4, 0);
        PlacementPlan current = new PlacementPlan(1, 2, 8, four, start.assignments());
        double before = DefaultPlacement.imbalance(current, load);
        PlacementPlan after = new DefaultPlacement(32).place(current, four, load, BYTES);
        double imbalanceAfter = DefaultPlacement.imbalance(after, load);
        assertTrue(imbalanceAfter < before, before + " -> " + imbalanceAfter);
        assertTrue(imbalanceAfter < 1.25, "close to even: " + imbalanceAfter);
        assertTrue(!after.byDevice().get("w3/cpu").isEmpty(), "the new device received experts");
        // few moves: most experts stay where they were
        long moved = after.assignments().stream().filter(a -> !a.devices().equals(current.devicesFor(a.id()))).count();
        assertTrue(moved <= 8, moved + " moves");
    }

    @Test
    void expertsOfALostDeviceArePlacedOnSurvivorsAndReplicasAreKept() {
        List<PlacementPlan.Device> three = devices(3, 0);
        PlacementPlan start = new PlacementPlan(1, 1, 3, three, List.of(
                new PlacementPlan.Assignment(0, 0, List.of("w0/cpu", "w1/cpu"), 0.5),
                new PlacementPlan.Assignment(0, 1, List.of("w2/cpu"), 0.3),
                new PlacementPlan.Assignment(0, 2, List.of("w1/cpu"), 0.2)));
        List<PlacementPlan.Device> survivors = three.subList(0, 2);
        PlacementPlan restricted = new PlacementPlan(1, 1, 3, three, start.assignments());
        PlacementPlan after = new DefaultPlacement(4).place(restricted, survivors, new double[][] {{5, 3, 2}}, BYTES);
        assertEquals(2, after.devicesFor(new ExpertId(0, 0)).size(), "replicas kept");
        assertTrue(survivors.stream().anyMatch(d -> after.devicesFor(new ExpertId(0, 1)).contains(d.id())));
    }
}
