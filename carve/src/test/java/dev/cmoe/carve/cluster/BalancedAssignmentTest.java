package dev.cmoe.carve.cluster;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

class BalancedAssignmentTest {

    /** Cost flavours: continuous, tiny integers (many ties), and integers with repeated rows. */
    static double[] randomCost(Random r, int n, int k, int flavour) {
        double[] cost = new double[n * k];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < k; j++) {
                cost[i * k + j] = switch (flavour) {
                    case 0 -> r.nextDouble() * 10;
                    case 1 -> r.nextInt(3);
                    default -> i % 3 == 0 || i == 0 ? r.nextInt(20) : cost[(i - 1) * k + j];
                };
            }
        }
        return cost;
    }

    static void assertBalanced(int[] assignment, int n, int k) {
        assertEquals(n, assignment.length);
        int[] size = new int[k];
        for (int j : assignment) {
            assertTrue(j >= 0 && j < k, "cluster out of range: " + j);
            size[j]++;
        }
        for (int j = 0; j < k; j++) {
            assertEquals(n / k, size[j], "size of cluster " + j);
        }
    }

    static void assertOptimal(double[] cost, int n, int k, String what) {
        int[] assignment = BalancedAssignment.solve(cost, n, k);
        assertBalanced(assignment, n, k);
        double expected = HungarianReference.minCost(cost, n, k);
        assertEquals(expected, BalancedAssignment.totalCost(cost, k, assignment), 1e-9, what);
    }

    @Test
    void hungarianReferenceAgreesWithBruteForce() {
        Random r = new Random(1);
        for (int trial = 0; trial < 200; trial++) {
            int k = 2 + r.nextInt(3);
            int n = k * (1 + r.nextInt(8 / k));
            double[] cost = randomCost(r, n, k, trial % 3);
            assertEquals(HungarianReference.bruteForce(cost, n, k), HungarianReference.minCost(cost, n, k), 1e-9,
                    "trial " + trial + " n=" + n + " k=" + k);
        }
    }

    @Test
    void matchesHungarianOnRandomSmallInstances() {
        Random r = new Random(2);
        for (int trial = 0; trial < 3000; trial++) {
            int k = 2 + r.nextInt(3);
            int n = k * (1 + r.nextInt(12 / k));
            assertOptimal(randomCost(r, n, k, trial % 3), n, k, "trial " + trial + " n=" + n + " k=" + k);
        }
    }

    @Test
    void matchesBruteForceOnTinyInstances() {
        Random r = new Random(3);
        for (int trial = 0; trial < 500; trial++) {
            int k = 2 + r.nextInt(3);
            int n = k * (1 + r.nextInt(9 / k));
            double[] cost = randomCost(r, n, k, trial % 3);
            int[] assignment = BalancedAssignment.solve(cost, n, k);
            assertBalanced(assignment, n, k);
            assertEquals(HungarianReference.bruteForce(cost, n, k), BalancedAssignment.totalCost(cost, k, assignment),
                    1e-9, "trial " + trial);
        }
    }

    @Test
    void matchesHungarianOnMediumInstances() {
        Random r = new Random(4);
        int[][] shapes = {{60, 5}, {120, 8}, {210, 7}, {240, 12}, {99, 9}};
        for (int[] shape : shapes) {
            for (int flavour = 0; flavour < 3; flavour++) {
                assertOptimal(randomCost(r, shape[0], shape[1], flavour), shape[0], shape[1],
                        "n=" + shape[0] + " k=" + shape[1] + " flavour " + flavour);
            }
        }
    }

    @Test
    void largeInstanceIsCertifiedOptimal() {
        // Markers-like costs: integer L1 distances, every item pulled toward the same few clusters.
        Random r = new Random(5);
        int k = 14;
        int n = k * 300;
        double[] cost = new double[n * k];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < k; j++) {
                cost[i * k + j] = 200 + 10 * j + r.nextInt(60);
            }
        }
        int[] assignment = BalancedAssignment.solve(cost, n, k);
        assertBalanced(assignment, n, k);
        assertFalse(HungarianReference.hasNegativeCycle(cost, k, assignment, 1e-9));
    }

    @Test
    void negativeCycleCertificateCatchesASwap() {
        // Guards the certificate used above: swapping two optimal items must be caught.
        double[] cost = {0, 5, 5, 0};
        assertFalse(HungarianReference.hasNegativeCycle(cost, 2, new int[] {0, 1}, 1e-9));
        assertTrue(HungarianReference.hasNegativeCycle(cost, 2, new int[] {1, 0}, 1e-9));
    }

    @Test
    void balanceOverridesEveryonesFavourite() {
        // Every item prefers cluster 0, so a greedy nearest-centroid pass would overfill it.
        int n = 9;
        int k = 3;
        double[] cost = new double[n * k];
        for (int i = 0; i < n; i++) {
            cost[i * k] = 0;
            cost[i * k + 1] = i;
            cost[i * k + 2] = 2.0 * i;
        }
        int[] assignment = BalancedAssignment.solve(cost, n, k);
        assertBalanced(assignment, n, k);
        // Cluster 2 costs 2i vs i for cluster 1: the items with the smallest i go to 2 and the
        // largest stay in 0, the cost of moving from 0 growing with i.
        assertArrayEquals(new int[] {2, 2, 2, 1, 1, 1, 0, 0, 0}, assignment);
        assertOptimal(cost, n, k, "all prefer cluster 0");
    }

    @Test
    void singleClusterTakesEverything() {
        double[] cost = {3, 1, 4, 1, 5};
        assertArrayEquals(new int[5], BalancedAssignment.solve(cost, 5, 1));
    }

    @Test
    void oneSlotPerClusterIsTheClassicAssignmentProblem() {
        Random r = new Random(6);
        for (int trial = 0; trial < 100; trial++) {
            int n = 1 + r.nextInt(10);
            assertOptimal(randomCost(r, n, n, trial % 3), n, n, "m=1 trial " + trial);
        }
    }

    @Test
    void allEqualCostsStillBalance() {
        int n = 12;
        int k = 4;
        double[] cost = new double[n * k];
        java.util.Arrays.fill(cost, 2.5);
        int[] assignment = BalancedAssignment.solve(cost, n, k);
        assertBalanced(assignment, n, k);
        assertEquals(30.0, BalancedAssignment.totalCost(cost, k, assignment), 0);
    }

    @Test
    void invalidInputIsRejectedWithTheNumbers() {
        var uneven = assertThrows(IllegalArgumentException.class,
                () -> BalancedAssignment.solve(new double[10 * 3], 10, 3));
        assertTrue(uneven.getMessage().contains("n=10") && uneven.getMessage().contains("k=3"), uneven.getMessage());
        var length = assertThrows(IllegalArgumentException.class,
                () -> BalancedAssignment.solve(new double[7], 4, 2));
        assertTrue(length.getMessage().contains("7") && length.getMessage().contains("8"), length.getMessage());
        var nan = assertThrows(IllegalArgumentException.class,
                () -> BalancedAssignment.solve(new double[] {0, Double.NaN, 1, 2}, 2, 2));
        assertTrue(nan.getMessage().contains("item 0 in cluster 1"), nan.getMessage());
        var empty = assertThrows(IllegalArgumentException.class,
                () -> BalancedAssignment.solve(new double[0], 4, 0));
        assertTrue(empty.getMessage().contains("k=0"), empty.getMessage());
        var badCluster = assertThrows(IllegalArgumentException.class,
                () -> BalancedAssignment.totalCost(new double[] {1, 2, 3, 4}, 2, new int[] {0, 2}));
        assertTrue(badCluster.getMessage().contains("cluster 2"), badCluster.getMessage());
    }

    @Test
    void totalCostSumsTheChosenEntries() {
        double[] cost = {1, 2, 3, 4, 5, 6};
        assertEquals(1 + 5, BalancedAssignment.totalCost(cost, 3, new int[] {0, 1}), 0);
    }
}
