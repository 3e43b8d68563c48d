package dev.cmoe.carve.cluster;

import java.util.Arrays;

/** Exact minimum-cost assignment of n items to k clusters of exactly m slots each, in O(n·k) memory. */
public final class BalancedAssignment {

    private BalancedAssignment() {
    }

    /**
     * Assigns every item to a cluster so that each cluster gets exactly m = n / k items and the
     * summed cost is minimal. The CMoE reference solves the same problem as an n × n assignment
     * (each centroid repeated m times); this is its transportation form, k sinks of capacity m.
     *
     * <p>Algorithm: successive shortest paths (min-cost flow source → items → clusters → sink
     * T, sink edges of capacity m). Items are added one at a time; each is placed along a
     * shortest path from it to a cluster with a free slot, which may push one item from cluster
     * a to cluster b, another from b to c, and so on. Item nodes are contracted away: a residual
     * path a → item x → b costs c[x][b] − c[x][a], so the edge a → b costs the cheapest such
     * move, read off a {@link MoveHeap} per ordered pair (a, b). Dijkstra runs over the k
     * clusters with reduced costs under cluster potentials φ.
     *
     * <p>Invariant (exact arithmetic): after each item the assignment of the items so far is
     * optimal among assignments of those items with at most m per cluster, and φ certifies it:
     * for every x in a and every b, c[x][b] − c[x][a] + φ[a] − φ[b] ≥ 0, and with the sink's
     * potential φ_T, φ[j] ≤ φ_T for a full cluster and φ[j] = φ_T for one with a free slot (its
     * edge to T and, when non-empty, back both have reduced cost 0). The final assignment has
     * all clusters full, so it is optimal. Time O(n·k² + M·k·log n) for M item moves (M ≤ n·(k−1),
     * under one per item on the 7B benchmark); memory O(n·k). Costs may be any finite doubles.
     *
     * @param cost row-major n × k, {@code cost[i * k + j]} = cost of item i in cluster j
     * @return assignment[i] = cluster of item i
     */
    public static int[] solve(double[] cost, int n, int k) {
        validate(cost, n, k);
        int m = n / k;
        int[] assignment = new int[n];
        if (k == 1) {
            return assignment;
        }
        Arrays.fill(assignment, -1);
        int[] size = new int[k];
        double[] potential = new double[k]; // φ of each cluster; φ_T is implicit (see the invariant)
        MoveHeap[] moves = new MoveHeap[k * k]; // moves[a * k + b]: items of a keyed by c[x][b] − c[x][a]
        for (int a = 0; a < k; a++) {
            for (int b = 0; b < k; b++) {
                moves[a * k + b] = a == b ? null : new MoveHeap();
            }
        }
        int compactAt = 2 * m + 64;
        int[] seen = new int[n];
        int stamp = 0;

        double[] dist = new double[k]; // reduced distance from the new item, shifted by a constant
        boolean[] settled = new boolean[k];
        int[] fromCluster = new int[k]; // shortest-path tree: b was reached from this cluster, or −1
        int[] movedItem = new int[k]; // ... by moving this item from fromCluster[b] to b
        for (int item = 0; item < n; item++) {
            int row = item * k;
            // Edges item → j cost c[item][j]; the item's own potential is a constant shift.
            for (int j = 0; j < k; j++) {
                dist[j] = cost[row + j] - potential[j];
                settled[j] = false;
                fromCluster[j] = -1;
            }
            // Dense Dijkstra over the k clusters: k is small, so O(k²) per item beats a heap.
            for (int step = 0; step < k; step++) {
                int a = -1;
                for (int j = 0; j < k; j++) {
                    if (!settled[j] && (a < 0 || dist[j] < dist[a])) {
                        a = j;
                    }
                }
                settled[a] = true;
                for (int b = 0; b < k; b++) {
                    if (settled[b]) {
                        continue;
                    }
                    MoveHeap heap = moves[a * k + b];
                    int x = heap.peek(assignment, a);
                    if (x < 0) {
                        continue;
                    }
                    // Non-negative up to rounding; clamping keeps Dijkstra's settled order sound.
                    double reduced = Math.max(0, heap.topKey() + potential[a] - potential[b]);
                    if (dist[a] + reduced < dist[b]) {
                        dist[b] = dist[a] + reduced;
                        fromCluster[b] = a;
                        movedItem[b] = x;
                    }
                }
            }
            // The sink T: its edge from a cluster with a free slot has reduced cost φ[j] − φ_T = 0,
            // so the nearest such cluster ends the shortest path.
            int target = -1;
            double distSink = Double.POSITIVE_INFINITY;
            for (int j = 0; j < k; j++) {
                if (size[j] < m && dist[j] < distSink) {
                    distSink = dist[j];
                    target = j;
                }
            }
            // φ += min(dist, dist_T) (φ_T += dist_T): keeps every reduced cost ≥ 0, makes the
            // path's edges tight, and leaves φ = φ_T on the clusters that still have a free slot.
            for (int j = 0; j < k; j++) {
                potential[j] += Math.min(dist[j], distSink);
            }
            // Augment: walk the path back from the target; each step shifts one item forward.
            size[target]++;
            int b = target;
            while (fromCluster[b] >= 0) {
                int a = fromCluster[b];
                int x = movedItem[b];
                assignment[x] = b;
                stamp = pushMoves(cost, k, moves, assignment, x, compactAt, seen, stamp);
                b = a;
            }
            assignment[item] = b;
            stamp = pushMoves(cost, k, moves, assignment, item, compactAt, seen, stamp);
        }
        return assignment;
    }

    /** Registers item x's moves out of its (new) cluster; compacts heaps grown stale. Returns the next stamp. */
    private static int pushMoves(double[] cost, int k, MoveHeap[] moves, int[] assignment, int x,
                                 int compactAt, int[] seen, int stamp) {
        int a = assignment[x];
        int row = x * k;
        for (int b = 0; b < k; b++) {
            if (b == a) {
                continue;
            }
            MoveHeap heap = moves[a * k + b];
            heap.push(cost[row + b] - cost[row + a], x);
            if (heap.size() > compactAt) {
                heap.compact(assignment, a, seen, ++stamp);
            }
        }
        return stamp;
    }

    /** Summed cost of an assignment. */
    public static double totalCost(double[] cost, int k, int[] assignment) {
        if (k < 1 || cost.length != (long) assignment.length * k) {
            throw new IllegalArgumentException("cost has " + cost.length + " entries, expected "
                    + assignment.length + " items × " + k + " clusters");
        }
        double total = 0;
        for (int i = 0; i < assignment.length; i++) {
            int j = assignment[i];
            if (j < 0 || j >= k) {
                throw new IllegalArgumentException("item " + i + " assigned to cluster " + j + ", not in [0, " + k + ")");
            }
            total += cost[i * k + j];
        }
        return total;
    }

    private static void validate(double[] cost, int n, int k) {
        if (k < 1 || n < 1) {
            throw new IllegalArgumentException("need at least one item and one cluster, got n=" + n + ", k=" + k);
        }
        if (n % k != 0) {
            throw new IllegalArgumentException("n=" + n + " items cannot fill k=" + k
                    + " clusters of equal size (n % k = " + n % k + ")");
        }
        if (cost.length != (long) n * k) {
            throw new IllegalArgumentException("cost has " + cost.length + " entries, expected n×k = "
                    + n + "×" + k + " = " + (long) n * k);
        }
        for (int e = 0; e < cost.length; e++) {
            if (!Double.isFinite(cost[e])) {
                throw new IllegalArgumentException("cost of item " + e / k + " in cluster " + e % k
                        + " is not finite: " + cost[e]);
            }
        }
    }
}
