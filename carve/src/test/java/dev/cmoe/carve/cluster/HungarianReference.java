package dev.cmoe.carve.cluster;

import java.util.Arrays;

/**
 * Test oracles for {@link BalancedAssignment}, built the way the CMoE reference poses the problem:
 * the n × n matrix with each cluster repeated m times, solved by the O(n³) Hungarian method
 * (shortest augmenting paths with row/column potentials), plus brute force for tiny n.
 */
final class HungarianReference {

    private HungarianReference() {
    }

    /** Minimum total cost of a balanced assignment, via Hungarian on the expanded n × n matrix. */
    static double minCost(double[] cost, int n, int k) {
        int m = n / k;
        // a[i][s] = cost of item i in slot s; slot s belongs to cluster s / m. 1-based, as in the textbook.
        double[][] a = new double[n + 1][n + 1];
        for (int i = 0; i < n; i++) {
            for (int s = 0; s < n; s++) {
                a[i + 1][s + 1] = cost[i * k + s / m];
            }
        }
        double[] u = new double[n + 1];
        double[] v = new double[n + 1];
        int[] p = new int[n + 1]; // p[s] = row matched to column s (0 = none)
        int[] way = new int[n + 1];
        for (int i = 1; i <= n; i++) {
            p[0] = i;
            int j0 = 0;
            double[] minv = new double[n + 1];
            Arrays.fill(minv, Double.POSITIVE_INFINITY);
            boolean[] used = new boolean[n + 1];
            do {
                used[j0] = true;
                int i0 = p[j0];
                double delta = Double.POSITIVE_INFINITY;
                int j1 = -1;
                for (int j = 1; j <= n; j++) {
                    if (!used[j]) {
                        double cur = a[i0][j] - u[i0] - v[j];
                        if (cur < minv[j]) {
                            minv[j] = cur;
                            way[j] = j0;
                        }
                        if (minv[j] < delta) {
                            delta = minv[j];
                            j1 = j;
                        }
                    }
                }
                for (int j = 0; j <= n; j++) {
                    if (used[j]) {
                        u[p[j]] += delta;
                        v[j] -= delta;
                    } else {
                        minv[j] -= delta;
                    }
                }
                j0 = j1;
            } while (p[j0] != 0);
            do {
                int j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
            } while (j0 != 0);
        }
        double total = 0;
        for (int s = 1; s <= n; s++) {
            total += a[p[s]][s];
        }
        return total;
    }

    /** Minimum total cost by enumerating every balanced assignment; only for tiny n. */
    static double bruteForce(double[] cost, int n, int k) {
        int[] free = new int[k];
        Arrays.fill(free, n / k);
        return enumerate(cost, n, k, 0, free);
    }

    private static double enumerate(double[] cost, int n, int k, int item, int[] free) {
        if (item == n) {
            return 0;
        }
        double best = Double.POSITIVE_INFINITY;
        for (int j = 0; j < k; j++) {
            if (free[j] > 0) {
                free[j]--;
                best = Math.min(best, cost[item * k + j] + enumerate(cost, n, k, item + 1, free));
                free[j]++;
            }
        }
        return best;
    }

    /**
     * Optimality certificate for a full balanced assignment without any reference solve: it is
     * optimal iff the cluster graph whose edge a → b costs the cheapest single move
     * min_{x in a} (c[x][b] − c[x][a]) has no negative cycle (Bellman–Ford over k nodes).
     */
    static boolean hasNegativeCycle(double[] cost, int k, int[] assignment, double tolerance) {
        double[][] w = new double[k][k];
        for (double[] row : w) {
            Arrays.fill(row, Double.POSITIVE_INFINITY);
        }
        for (int x = 0; x < assignment.length; x++) {
            int a = assignment[x];
            for (int b = 0; b < k; b++) {
                if (b != a) {
                    w[a][b] = Math.min(w[a][b], cost[x * k + b] - cost[x * k + a]);
                }
            }
        }
        double[] d = new double[k]; // all zero: a virtual source to every node
        for (int round = 0; round < k; round++) {
            boolean changed = false;
            for (int a = 0; a < k; a++) {
                for (int b = 0; b < k; b++) {
                    if (a != b && d[a] + w[a][b] < d[b] - tolerance) {
                        d[b] = d[a] + w[a][b];
                        changed = true;
                    }
                }
            }
            if (!changed) {
                return false;
            }
        }
        return true;
    }
}
