package dev.cmoe.carve;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
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

    /**
     * Co-activation clustering: the same shared expert (highest μ), then the routed neurons grouped
     * by their importance profiles over the calibration tokens rather than by binary markers.
     * Each profile is L2-normalised; the cost of neuron i in cluster j is 1 − cos(p_i, c_j), solved
     * by the same exact balanced assignment and repeated with the clusters' mean profiles as
     * centroids (balanced spherical k-means) until stable or {@code maxPasses}. Seeds are the
     * profiles of the N_r most often marked non-shared neurons, as in {@link #carve}. Neurons that
     * fire on the same tokens land together, so an expert's members are on or off as a block.
     *
     * @param profiles (inter, tokens) neuron-major importance values
     * @param tokens calibration tokens (columns of {@code profiles})
     * @return representatives are the members with the highest cosine to their centroid
     */
    static Result profiles(float[] profiles, int tokens, double[] rates, int nShared, int nRouted, int m,
                           int maxPasses) {
        int inter = rates.length;
        if (nShared * m + nRouted * m != inter || profiles.length != (long) inter * tokens) {
            throw new IllegalArgumentException((nShared + nRouted) + " experts of " + m + " neurons do not cover "
                    + inter + " neurons of " + tokens + "-token profiles");
        }
        int[] byRate = byRateDescending(rates);
        int[] shared = Arrays.copyOf(byRate, nShared * m);
        Arrays.sort(shared);
        int[] seeds = Arrays.copyOfRange(byRate, nShared * m, nShared * m + nRouted);
        int[] rest = Arrays.copyOfRange(byRate, nShared * m, inter);
        Arrays.sort(rest);
        int n = rest.length;
        int[] assignment = null;
        int passes = 0;
        boolean converged = false;
        int[] representatives;
        try (NDManager mgr = NDManager.newBaseManager()) {
            float[] restProfiles = new float[n * tokens];
            for (int i = 0; i < n; i++) {
                System.arraycopy(profiles, rest[i] * tokens, restProfiles, i * tokens, tokens);
            }
            NDArray p = unitRows(mgr.create(restProfiles, new Shape(n, tokens)));
            int[] seedRows = new int[nRouted];
            for (int j = 0; j < nRouted; j++) {
                seedRows[j] = Arrays.binarySearch(rest, seeds[j]);
            }
            NDArray centroids = p.get(new NDIndex("{}",
                    mgr.create(toLongs(seedRows))));
            double[] cost = null;
            while (passes < maxPasses && !converged) {
                cost = cosineCost(p, centroids);
                int[] next = BalancedAssignment.solve(cost, n, nRouted);
                passes++;
                converged = Arrays.equals(next, assignment);
                assignment = next;
                centroids.close();
                centroids = meanRows(mgr, p, assignment, nRouted);
            }
            cost = cosineCost(p, centroids);
            representatives = new int[nRouted];
            double[] best = new double[nRouted];
            Arrays.fill(best, Double.POSITIVE_INFINITY);
            for (int i = 0; i < n; i++) { // ascending, so ties keep the lower neuron
                int j = assignment[i];
                if (cost[i * nRouted + j] < best[j]) {
                    best[j] = cost[i * nRouted + j];
                    representatives[j] = rest[i];
                }
            }
        }
        return new Result(shared, members(rest, assignment, nRouted), representatives, passes, converged);
    }

    /** 1 − cos between every row of unit {@code p} (n, T) and every centroid (k, T): (n, k) row-major. */
    private static double[] cosineCost(NDArray p, NDArray centroids) {
        try (NDManager tmp = p.getManager().newSubManager()) {
            NDArray c = unitRows(centroids.duplicate());
            c.attach(tmp);
            NDArray sim = p.matMul(c.transpose());
            sim.attach(tmp);
            float[] s = sim.toFloatArray();
            double[] cost = new double[s.length];
            for (int i = 0; i < s.length; i++) {
                cost[i] = 1.0 - s[i];
            }
            return cost;
        }
    }

    private static NDArray unitRows(NDArray a) {
        return a.div(a.norm(new int[] {1}, true).maximum(1e-12f));
    }

    /** Per cluster the mean of its rows of {@code p}: (k, T). */
    private static NDArray meanRows(NDManager mgr, NDArray p,
                                                   int[] assignment, int k) {
        int n = assignment.length;
        float[] onehot = new float[k * n];
        int[] size = new int[k];
        for (int c : assignment) {
            size[c]++;
        }
        for (int i = 0; i < n; i++) {
            onehot[assignment[i] * n + i] = 1f / size[assignment[i]];
        }
        return mgr.create(onehot, new Shape(k, n)).matMul(p);
    }

    private static long[] toLongs(int[] v) {
        long[] out = new long[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i];
        }
        return out;
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
