package dev.cmoe.carve.cluster;

import java.util.Arrays;
import java.util.Comparator;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * CMoE step 4 at LLaMA-2-7B shape, on {@link SolverBench}'s synthetic markers (16,384 tokens ×
 * 11,008 neurons, K_a 10; S2 of 16: 9,632 neurons into 14 clusters of 688): the L1 cost matrix to
 * the initial centroids and the exact balanced assignment on it. Lives in SolverBench's package to
 * reuse its marker generator.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx6g")
@Warmup(iterations = 2)
@Measurement(iterations = 3)
public class SolverJmh {
    private MarkerMatrix markers;
    private int[] routed;
    private float[][] centroids;
    private double[] cost;

    @Setup(Level.Trial)
    public void setup() {
        markers = SolverBench.syntheticMarkers(new Random(42));
        int m = SolverBench.NEURONS / SolverBench.EXPERTS;
        double[] rates = markers.rates();
        Integer[] byRate = IntStream.range(0, SolverBench.NEURONS).boxed().toArray(Integer[]::new);
        Arrays.sort(byRate, Comparator.comparingDouble((Integer i) -> -rates[i]));
        routed = new int[SolverBench.NEURONS - SolverBench.SHARED * m];
        for (int r = 0; r < routed.length; r++) {
            routed[r] = byRate[SolverBench.SHARED * m + r];
        }
        int k = SolverBench.EXPERTS - SolverBench.SHARED;
        centroids = new float[k][];
        for (int j = 0; j < k; j++) {
            centroids[j] = markers.column(routed[j]);
        }
        cost = markers.l1ToCentroids(routed, centroids);
    }

    /** The (9,632 × 14) L1 distances of marker columns to the centroids. */
    @Benchmark
    public double[] costMatrix() {
        return markers.l1ToCentroids(routed, centroids);
    }

    /** The exact balanced assignment (successive shortest paths) on that cost. */
    @Benchmark
    public int[] solve() {
        return BalancedAssignment.solve(cost, routed.length, SolverBench.EXPERTS - SolverBench.SHARED);
    }
}
