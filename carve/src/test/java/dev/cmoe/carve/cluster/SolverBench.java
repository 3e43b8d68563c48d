package dev.cmoe.carve.cluster;

import java.util.Arrays;
import java.util.Comparator;
import java.util.Random;
import java.util.stream.IntStream;

/**
 * Times CMoE step 4 at LLaMA-2-7B scale on synthetic markers: one layer's 16,384 tokens × 11,008
 * neurons, K_a = 10, carved S2 of 16 experts (688 neurons each): 9,632 neurons into 14 clusters.
 * Run by hand (no asserts): {@code java -cp carve/target/classes:carve/target/test-classes:...
 * dev.cmoe.carve.cluster.SolverBench [repeats]}.
 */
public final class SolverBench {
    static final int TOKENS = 16_384;
    static final int NEURONS = 11_008; // d_h
    static final int K_ACT = 10; // K_a
    static final int EXPERTS = 16; // N
    static final int SHARED = 2; // N_s
    static final int TOPICS = 64; // latent token groups, so the markers have clusters to find

    private SolverBench() {
    }

    public static void main(String[] args) {
        int repeats = args.length > 0 ? Integer.parseInt(args[0]) : 3;
        System.out.printf("tokens=%d neurons=%d K_a=%d N=%d N_s=%d cores=%d%n", TOKENS, NEURONS, K_ACT, EXPERTS,
                SHARED, Runtime.getRuntime().availableProcessors());
        System.out.printf("%-4s %9s %9s %9s %9s %9s %9s %12s %12s %s%n", "run", "markers", "rates", "cost1",
                "solve1", "cost2", "solve2", "total1", "total2", "optimal");
        for (int run = 1; run <= repeats; run++) {
            runOnce(run, new Random(42));
        }
    }

    static void runOnce(int run, Random random) {
        long t0 = System.nanoTime();
        MarkerMatrix markers = syntheticMarkers(random);
        long t1 = System.nanoTime();

        // Step 3: the N_s·m most active neurons form the shared expert; the rest are routed.
        int m = NEURONS / EXPERTS;
        double[] rates = markers.rates();
        Integer[] byRate = IntStream.range(0, NEURONS).boxed().toArray(Integer[]::new);
        Arrays.sort(byRate, Comparator.comparingDouble((Integer i) -> -rates[i]));
        int[] routed = new int[NEURONS - SHARED * m];
        for (int r = 0; r < routed.length; r++) {
            routed[r] = byRate[SHARED * m + r];
        }
        int k = EXPERTS - SHARED;
        float[][] centroids = new float[k][];
        for (int j = 0; j < k; j++) {
            centroids[j] = markers.column(routed[j]); // routed is sorted by μ, descending
        }
        long t2 = System.nanoTime();

        // Step 4, the reference's single pass: cost to the initial centroids, exact balanced assignment.
        double[] cost = markers.l1ToCentroids(routed, centroids);
        long t3 = System.nanoTime();
        int[] assignment = BalancedAssignment.solve(cost, routed.length, k);
        long t4 = System.nanoTime();
        double total1 = BalancedAssignment.totalCost(cost, k, assignment);

        // A second pass on the cluster means: non-integer costs.
        for (int j = 0; j < k; j++) {
            final int cluster = j;
            int[] members = IntStream.range(0, routed.length).filter(r -> assignment[r] == cluster)
                    .map(r -> routed[r]).toArray();
            centroids[j] = markers.mean(members);
        }
        long t5 = System.nanoTime();
        double[] cost2 = markers.l1ToCentroids(routed, centroids);
        long t6 = System.nanoTime();
        int[] assignment2 = BalancedAssignment.solve(cost2, routed.length, k);
        long t7 = System.nanoTime();
        double total2 = BalancedAssignment.totalCost(cost2, k, assignment2);

        boolean optimal = !HungarianReference.hasNegativeCycle(cost, k, assignment, 1e-9)
                && !HungarianReference.hasNegativeCycle(cost2, k, assignment2, 1e-9);
        System.out.printf("%-4d %7.0fms %7.0fms %7.0fms %7.0fms %7.0fms %7.0fms %12.1f %12.1f %s%n", run,
                ms(t1 - t0), ms(t2 - t1), ms(t3 - t2), ms(t4 - t3), ms(t6 - t5), ms(t7 - t6), total1, total2,
                optimal ? "certified" : "NEGATIVE CYCLE");
    }

    /**
     * ATopK-shaped markers: per token K_a distinct neurons, drawn from Zipf-skewed weights (some
     * neurons fire on most tokens, most rarely), half of them from the token's latent topic.
     */
    static MarkerMatrix syntheticMarkers(Random random) {
        int[] perm = IntStream.range(0, NEURONS).toArray();
        for (int i = NEURONS - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        double[] cumulative = new double[NEURONS]; // Zipf(0.9) over a random ranking of the neurons
        double sum = 0;
        for (int rank = 0; rank < NEURONS; rank++) {
            sum += Math.pow(rank + 1, -0.9);
            cumulative[rank] = sum;
        }
        int perTopic = NEURONS / TOPICS;
        MarkerMatrix markers = new MarkerMatrix(TOKENS, NEURONS);
        int[] picked = new int[K_ACT];
        for (int t = 0; t < TOKENS; t++) {
            int topic = random.nextInt(TOPICS);
            for (int s = 0; s < K_ACT; s++) {
                int neuron;
                do {
                    neuron = random.nextBoolean()
                            ? perm[draw(cumulative, sum, random)]
                            : topic * perTopic + (int) (perTopic * Math.pow(random.nextDouble(), 3));
                } while (contains(picked, s, neuron));
                picked[s] = neuron;
                markers.set(t, neuron);
            }
        }
        return markers;
    }

    static int draw(double[] cumulative, double sum, Random random) {
        int at = Arrays.binarySearch(cumulative, random.nextDouble() * sum);
        return Math.min(cumulative.length - 1, at >= 0 ? at : -at - 1);
    }

    static boolean contains(int[] values, int count, int value) {
        for (int i = 0; i < count; i++) {
            if (values[i] == value) {
                return true;
            }
        }
        return false;
    }

    static double ms(long nanos) {
        return nanos / 1e6;
    }
}
