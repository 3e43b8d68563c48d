package dev.cmoe.carve;

import dev.cmoe.carve.cluster.BalancedAssignment;
import dev.cmoe.carve.cluster.MarkerMatrix;
import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;

/**
 * CMoE steps 3–5: the shared expert (the most often marked neurons), the balanced clustering of
 * the rest into routed experts of exactly m neurons, and each expert's representative neuron.
 */
final class Clustering {
    /**
     * The carving of one layer's neurons.
     *
     * @param shared the shared expert's neurons, ascending (N_s·m)
     * @param experts per routed expert its neurons, ascending (N_r × m)
     * @param representatives per routed expert the member nearest (L1) to its final centroid
     * @param passes assignment passes run
     * @param converged whether the last pass reproduced the previous assignment
     */
    record Result(int[] shared, int[][] experts, int[] representatives, int passes, boolean converged) {
    }

    private Clustering() {
    }

    /**
     * Splits the neurons of {@code markers}.
     *
     * <p>Initial centroids are the marker columns of the N_r most often marked non-shared neurons
     * (expert j grows around the j-th of them); the cost of neuron i in cluster j is the L1
     * distance between its column and centroid j, and the balanced assignment is solved exactly.
     * Each pass is followed by recomputing the centroids as cluster means. The reference stops
     * after one pass ({@code maxPasses} = 1); more passes repeat until the assignment is stable.
     *
     * @param rates μ of every neuron
     */
    static Result carve(MarkerMatrix markers, double[] rates, int nShared, int nRouted, int m, int maxPasses) {
        int inter = markers.neurons();
        if (nShared * m + nRouted * m != inter) {
            throw new IllegalArgumentException((nShared + nRouted) + " experts of " + m + " neurons do not cover "
                    + inter + " neurons");
        }
        int[] byRate = byRateDescending(rates);
        int[] shared = Arrays.copyOf(byRate, nShared * m);
        Arrays.sort(shared);
        // the rest, ascending, and the N_r most often marked of them as seeds
        int[] rest = Arrays.copyOfRange(byRate, nShared * m, inter);
        float[][] centroids = new float[nRouted][];
        for (int j = 0; j < nRouted; j++) {
            centroids[j] = markers.column(rest[j]);
        }
        Arrays.sort(rest);
        int n = rest.length;
        int[] assignment = null;
        int passes = 0;
        boolean converged = false;
        while (passes < maxPasses && !converged) {
            int[] next = BalancedAssignment.solve(markers.l1ToCentroids(rest, centroids), n, nRouted);
            passes++;
            converged = Arrays.equals(next, assignment);
            assignment = next;
            centroids = means(markers, rest, assignment, nRouted);
        }
        int[][] experts = members(rest, assignment, nRouted);
        return new Result(shared, experts, representatives(markers, experts, centroids), passes, converged);
    }

    /**
     * Ablation: the same shared expert, but the routed neurons dealt into groups of {@code m} in a
     * seeded random order instead of clustered; representatives as usual (closest to the group mean).
     */
    static Result random(MarkerMatrix markers, double[] rates, int nShared, int nRouted, int m, long seed) {
        int[] byRate = byRateDescending(rates);
        int[] shared = Arrays.copyOf(byRate, nShared * m);
        Arrays.sort(shared);
        int[] rest = Arrays.copyOfRange(byRate, nShared * m, byRate.length);
        java.util.Random r = new java.util.Random(seed);
        for (int i = rest.length - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            int tmp = rest[i];
            rest[i] = rest[j];
            rest[j] = tmp;
        }
        int[] assignment = new int[rest.length];
        for (int i = 0; i < rest.length; i++) {
            assignment[i] = i / m;
        }
        int[][] experts = members(rest, assignment, nRouted);
        float[][] centroids = means(markers, rest, assignment, nRouted);
        return new Result(shared, experts, representatives(markers, experts, centroids), 0, false);
    }

    /** Neuron indices by μ, highest first; ties go to the lower index. */
    static int[] byRateDescending(double[] rates) {
        return IntStream.range(0, rates.length).boxed()
                .sorted(Comparator.<Integer>comparingDouble(i -> -rates[i]).thenComparingInt(i -> i))
                .mapToInt(Integer::intValue).toArray();
    }

    private static int[][] members(int[] rest, int[] assignment, int k) {
        int[] size = new int[k];
        for (int c : assignment) {
            size[c]++;
        }
        int[][] out = new int[k][];
        for (int j = 0; j < k; j++) {
            out[j] = new int[size[j]];
            size[j] = 0;
        }
        for (int i = 0; i < rest.length; i++) { // rest is ascending, so members are too
            int c = assignment[i];
            out[c][size[c]++] = rest[i];
        }
        return out;
    }

    private static float[][] means(MarkerMatrix markers, int[] rest, int[] assignment, int k) {
        int[][] members = members(rest, assignment, k);
        float[][] c = new float[k][];
        for (int j = 0; j < k; j++) {
            c[j] = markers.mean(members[j]);
        }
        return c;
    }

    /** Per expert, the member with the smallest L1 distance to its centroid (ties: lower index). */
    private static int[] representatives(MarkerMatrix markers, int[][] experts, float[][] centroids) {
        int[] reps = new int[experts.length];
        for (int j = 0; j < experts.length; j++) {
            double[] d = markers.l1ToCentroids(experts[j], new float[][] {centroids[j]});
            int best = 0;
            for (int i = 1; i < d.length; i++) {
                if (d[i] < d[best]) {
                    best = i;
                }
            }
            reps[j] = experts[j][best];
        }
        return reps;
    }
}
