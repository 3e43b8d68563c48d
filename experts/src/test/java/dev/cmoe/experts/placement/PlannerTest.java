package dev.cmoe.experts.placement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.experts.ExpertId;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The EPLB planner against round-robin, brute force and its own constraints. */
class PlannerTest {
    private static final long EXPERT_BYTES = 1000;

    private static List<PlacementPlan.Device> devices(int n, long memory) {
        List<PlacementPlan.Device> out = new ArrayList<>();
        for (int d = 0; d < n; d++) {
            out.add(new PlacementPlan.Device("w" + (d / 2) + "/gpu:" + (d % 2), memory));
        }
        return out;
    }

    private static PlacementPlan plan(ExpertLoads loads, int devices, int spare) {
        return Planner.plan(loads, memory(loads), new Planner.Request(devices(devices, 0), spare, 0));
    }

    private static ExpertMemory memory(ExpertLoads loads) {
        return ExpertMemory.uniform(loads.layers(), loads.experts(), EXPERT_BYTES);
    }

    private static PlacementStats stats(PlacementPlan plan, ExpertLoads loads) {
        return PlacementStats.of(plan, loads, memory(loads));
    }

    private static PlacementStats roundRobin(ExpertLoads loads, int devices) {
        // devices without a budget: (l, e) on device (l·experts + e) mod devices, as `cmoe plan` compares against
        return stats(DefaultPlacement.roundRobin(loads.layers(), loads.experts(), devices(devices, 0), EXPERT_BYTES),
                loads);
    }

    /** Zipf-like loads (share ∝ 1/rank^s), ranks shuffled per layer so hot experts sit anywhere. */
    private static ExpertLoads skewed(int layers, int experts, double s, long seed) {
        Random r = new Random(seed);
        double[][] counts = new double[layers][experts];
        for (int l = 0; l < layers; l++) {
            List<Integer> ranks = new ArrayList<>();
            for (int e = 0; e < experts; e++) {
                ranks.add(e + 1);
            }
            java.util.Collections.shuffle(ranks, r);
            for (int e = 0; e < experts; e++) {
                counts[l][e] = Math.round(10_000 / Math.pow(ranks.get(e), s));
            }
        }
        return ExpertLoads.ofCounts("zipf", counts);
    }

    @Test
    void beatsRoundRobinOnSkewedLoadsAndSpareSlotsHelpFurther() {
        ExpertLoads loads = skewed(6, 16, 1.0, 1);
        PlacementStats rr = roundRobin(loads, 4);
        PlacementStats packed = stats(plan(loads, 4, 0), loads);
        PlacementStats replicated = stats(plan(loads, 4, 8), loads);
        // Zipf(1) over 16 experts: the hottest alone is ~30% of a layer, above the 25% a device should carry,
        // so without replicas no layout can beat max/mean = 4 × 0.30 = 1.2 and round-robin is far above it
        assertTrue(rr.stepImbalance() > 1.4, "round-robin " + rr.stepImbalance());
        assertTrue(packed.stepImbalance() < rr.stepImbalance() * 0.9,
                packed.stepImbalance() + " vs round-robin " + rr.stepImbalance());
        assertTrue(packed.deviceImbalance() <= rr.deviceImbalance(),
                packed.deviceImbalance() + " vs round-robin " + rr.deviceImbalance());
        double hottest = 0;
        for (int l = 0; l < loads.layers(); l++) {
            double max = 0;
            for (int e = 0; e < loads.experts(); e++) {
                max = Math.max(max, loads.share(l, e));
            }
            hottest += max;
        }
        double bound = hottest * 4 / loads.layers(); // the lower bound without replicas
        assertEquals(bound, packed.stepImbalance(), 0.02, "packing alone reaches the hottest-expert bound");
        // replicas split the hottest experts and go below that bound
        assertTrue(replicated.stepImbalance() < bound - 0.1, replicated.stepImbalance() + " vs bound " + bound);
        assertTrue(replicated.stepImbalance() < 1.1, "with 8 spare slots: " + replicated.stepImbalance());
    }

    @Test
    void neverWorseThanRoundRobinOnRandomInstances() {
        Random r = new Random(7);
        for (int trial = 0; trial < 300; trial++) {
            int layers = 1 + r.nextInt(4);
            int experts = 2 + r.nextInt(19);
            int devices = 1 + r.nextInt(6);
            double[][] counts = new double[layers][experts];
            for (double[] row : counts) {
                for (int e = 0; e < experts; e++) {
                    // a mix of cold, warm and a few very hot experts
                    row[e] = r.nextInt(4) == 0 ? r.nextInt(3) : Math.floor(Math.exp(r.nextGaussian() * 1.5) * 100);
                }
                row[r.nextInt(experts)] += 1;
            }
            ExpertLoads loads = ExpertLoads.ofCounts("random", counts);
            PlacementPlan plan = plan(loads, devices, 0);
            checkConstraints(plan, loads);
            PlacementStats planned = stats(plan, loads);
            PlacementStats rr = roundRobin(loads, devices);
            String what = "trial " + trial + ": " + layers + "×" + experts + " on " + devices;
            assertTrue(planned.stepImbalance() <= rr.stepImbalance() + 1e-9,
                    what + ": planner " + planned.stepImbalance() + " > round-robin " + rr.stepImbalance());

            int spare = r.nextInt(Math.max(1, layers * experts * (devices - 1) + 1));
            checkConstraints(plan(loads, devices, Math.min(spare, layers * experts)), loads);
        }
    }

    /** Every expert placed, replicas on distinct devices (PlacementPlan checks these too). */
    private static void checkConstraints(PlacementPlan plan, ExpertLoads loads) {
        Map<ExpertId, List<String>> byExpert = plan.byExpert();
        for (int l = 0; l < loads.layers(); l++) {
            for (int e = 0; e < loads.experts(); e++) {
                List<String> hosts = byExpert.get(new ExpertId(l, e));
                assertTrue(hosts != null && !hosts.isEmpty(), "expert (" + l + ", " + e + ") unplaced");
                assertEquals(hosts.size(), new HashSet<>(hosts).size(), "replicas share a device: " + hosts);
            }
        }
    }

    /** The least possible max device load of one layer, by trying every assignment (the slow twin). */
    private static double bruteForceMax(double[] shares, int devices) {
        int n = shares.length;
        int[] assign = new int[n];
        double best = Double.MAX_VALUE;
        long combos = (long) Math.pow(devices, n);
        for (long c = 0; c < combos; c++) {
            long x = c;
            double[] load = new double[devices];
            for (int i = 0; i < n; i++) {
                assign[i] = (int) (x % devices);
                x /= devices;
                load[assign[i]] += shares[i];
            }
            double max = 0;
            for (double v : load) {
                max = Math.max(max, v);
            }
            best = Math.min(best, max);
        }
        return best;
    }

    private static double planMax(double[] counts, int devices, int spare) {
        ExpertLoads loads = ExpertLoads.ofCounts("hand", new double[][] {counts});
        PlacementStats s = stats(plan(loads, devices, spare), loads);
        return s.layerImbalance(0) / devices; // the busiest device's share of the layer
    }

    @Test
    void optimalOnSmallHandCheckedCases() {
        // 2,3,2,3,2 on 2 devices: greedy heaviest-first gives 3+2+2 = 7 of 12; {3,3} | {2,2,2} = 6 is optimal
        assertEquals(6.0 / 12, planMax(new double[] {2, 3, 2, 3, 2}, 2, 0), 1e-12);
        // 5,4,3,3,3 on 2 devices: greedy gives 10 of 18; {5,4} | {3,3,3} = 9
        assertEquals(9.0 / 18, planMax(new double[] {5, 4, 3, 3, 3}, 2, 0), 1e-12);
        // 8,7,6,5,4 on 3 devices: {8} {7,4} {6,5}: 11 of 30
        assertEquals(11.0 / 30, planMax(new double[] {8, 7, 6, 5, 4}, 3, 0), 1e-12);
        // 6,1,1 with one spare slot on 2 devices: the 6 is split 3 + 3, then {3,1} | {3,1}
        assertEquals(4.0 / 8, planMax(new double[] {6, 1, 1}, 2, 1), 1e-12);
        // the same cases and more against brute force
        double[][] cases = {{2, 3, 2, 3, 2}, {5, 4, 3, 3, 3}, {8, 7, 6, 5, 4}, {9, 1, 1, 1, 1, 1, 1, 1}, {4, 4, 3, 3, 2, 2},
            {7, 5, 5, 4, 3, 2, 1}};
        for (double[] c : cases) {
            double total = 0;
            for (double v : c) {
                total += v;
            }
            double[] shares = c.clone();
            for (int i = 0; i < shares.length; i++) {
                shares[i] /= total;
            }
            for (int devices = 2; devices <= 3; devices++) {
                assertEquals(bruteForceMax(shares, devices), planMax(c, devices, 0), 1e-12,
                        java.util.Arrays.toString(c) + " on " + devices);
            }
        }
    }

    @Test
    void spareSlotsGoToTheHighestLoadPerReplica() {
        ExpertLoads loads = ExpertLoads.ofCounts("hand", new double[][] {{10, 1, 1, 1}, {1, 1, 1, 4}});
        PlacementPlan plan = plan(loads, 4, 3);
        // shares 10/13 = .77 and 4/7 = .57: .77 splits (.38 each), then .57 (.29 each), then .38 again (.26)
        assertEquals(3, plan.devicesFor(new ExpertId(0, 0)).size());
        assertEquals(2, plan.devicesFor(new ExpertId(1, 3)).size());
        assertEquals(1, plan.devicesFor(new ExpertId(0, 1)).size());
        checkConstraints(plan, loads);
        // an expert may not have more replicas than there are devices
        IllegalArgumentException tooMany = assertThrows(IllegalArgumentException.class, () -> plan(loads, 2, 9));
        assertTrue(tooMany.getMessage().contains("at most 8 fit"), tooMany.getMessage());
    }

    @Test
    void memoryBudgetsAreRespected() {
        ExpertLoads loads = skewed(4, 10, 1.2, 3);
        // 40 experts of 1000 bytes + 6 spare on three devices: one small (8 replicas), two larger
        List<PlacementPlan.Device> devices = List.of(new PlacementPlan.Device("a/gpu:0", 8_000),
                new PlacementPlan.Device("a/gpu:1", 25_000), new PlacementPlan.Device("b/cpu", 19_000));
        ExpertMemory memory = memory(loads);
        PlacementPlan plan = Planner.plan(loads, memory, new Planner.Request(devices, 6, 0));
        checkConstraints(plan, loads);
        PlacementStats s = PlacementStats.of(plan, loads, memory);
        for (int d = 0; d < devices.size(); d++) {
            assertTrue(s.memoryBytes()[d] <= devices.get(d).memoryBytes(),
                    devices.get(d).id() + " holds " + s.memoryBytes()[d] + " bytes");
        }
        assertEquals(46, s.replicas()[0] + s.replicas()[1] + s.replicas()[2]);
        // exactly full: 46 slots for 46 replicas, so every device ends at its budget
        List<PlacementPlan.Device> exact = List.of(new PlacementPlan.Device("a/gpu:0", 8_000),
                new PlacementPlan.Device("a/gpu:1", 19_000), new PlacementPlan.Device("b/cpu", 19_000));
        PlacementStats full = PlacementStats.of(Planner.plan(loads, memory, new Planner.Request(exact, 6, 0)), loads,
                memory);
        assertEquals(List.of(8, 19, 19), List.of(full.replicas()[0], full.replicas()[1], full.replicas()[2]));

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Planner.plan(loads, memory, new Planner.Request(devices(3, 10_000), 0, 0)));
        assertTrue(e.getMessage().contains("experts do not fit: 40 expert replicas")
                && e.getMessage().contains("need 39.1 KiB but the 3 devices have 29.3 KiB"), e.getMessage());
        IllegalArgumentException tooBig = assertThrows(IllegalArgumentException.class,
                () -> Planner.plan(loads, memory, new Planner.Request(devices(3, 999), 0, 0)));
        assertTrue(tooBig.getMessage().contains("expert (0, 0) needs 1000 B but the largest device budget is 999 B"),
                tooBig.getMessage());
    }

    @Test
    void slotsPerDeviceFillEveryDeviceExactly() {
        Random r = new Random(11);
        for (int trial = 0; trial < 40; trial++) {
            int devices = 2 + r.nextInt(4);
            int experts = 3 + r.nextInt(12);
            int layers = 1 + r.nextInt(3);
            int slots = (layers * experts + devices - 1) / devices + r.nextInt(3);
            int spare = slots * devices - layers * experts;
            ExpertLoads loads = skewed(layers, experts, 1.5, trial);
            if (spare > layers * experts * (devices - 1)) {
                continue;
            }
            PlacementPlan plan = Planner.plan(loads, memory(loads),
                    new Planner.Request(devices(devices, 0), spare, slots));
            checkConstraints(plan, loads);
            for (List<ExpertId> hosted : plan.byDevice().values()) {
                assertEquals(slots, hosted.size(), "trial " + trial);
            }
        }
    }
}
