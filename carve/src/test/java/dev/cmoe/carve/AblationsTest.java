package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import dev.cmoe.carve.cluster.MarkerMatrix;
import java.util.Arrays;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** The ablation recipes are what they claim: same shared expert, random balanced groups or random unit router rows. */
class AblationsTest {

    static MarkerMatrix markers(int tokens, int neurons, long seed) {
        MarkerMatrix m = new MarkerMatrix(tokens, neurons);
        Random r = new Random(seed);
        for (int t = 0; t < tokens; t++) {
            for (int k = 0; k < 4; k++) {
                // skewed: low neuron ids fire more often
                m.set(t, (int) Math.min(neurons - 1, Math.abs(r.nextGaussian()) * neurons / 3));
            }
        }
        return m;
    }

    @Test
    void randomGroupsKeepTheSharedExpertAndAreBalancedSeededPartitions() {
        MarkerMatrix m = markers(400, 48, 3);
        double[] rates = m.rates();
        Clustering.Result clustered = Clustering.carve(m, rates, 2, 4, 8, 1);
        Clustering.Result a = Clustering.random(m, rates, 2, 4, 8, 11);
        Clustering.Result b = Clustering.random(m, rates, 2, 4, 8, 11);
        Clustering.Result c = Clustering.random(m, rates, 2, 4, 8, 12);
        assertArrayEquals(clustered.shared(), a.shared(), "the shared expert does not depend on the grouping");
        assertEquals(4, a.experts().length);
        int[] all = Arrays.stream(a.experts()).peek(g -> assertEquals(8, g.length)).flatMapToInt(Arrays::stream)
                .sorted().toArray();
        int[] rest = IntStream.range(0, 48).filter(i -> Arrays.binarySearch(a.shared(), i) < 0).toArray();
        assertArrayEquals(rest, all, "every routed neuron in exactly one group");
        assertArrayEquals(a.experts()[0], b.experts()[0], "same seed, same groups");
        assertFalse(Arrays.deepEquals(a.experts(), c.experts()), "another seed, other groups");
        for (int j = 0; j < 4; j++) {
            int rep = a.representatives()[j];
            assertEquals(true, Arrays.stream(a.experts()[j]).anyMatch(n -> n == rep), "representative is a member");
        }
    }

    @Test
    void randomRouterRowsAreSeededUnitVectors() {
        RouterFit.Rows a = RouterFit.random(16, new int[] {3, 9, 20}, 5);
        RouterFit.Rows b = RouterFit.random(16, new int[] {3, 9, 20}, 5);
        assertArrayEquals(a.classifier(), b.classifier());
        for (float[] rows : new float[][] {a.classifier(), a.gate()}) {
            for (int j = 0; j < 3; j++) {
                double norm = 0;
                for (int i = 0; i < 16; i++) {
                    norm += rows[j * 16 + i] * rows[j * 16 + i];
                }
                assertEquals(1.0, norm, 1e-5);
            }
        }
        assertFalse(Arrays.equals(a.classifier(), a.gate()), "classifier and gate rows are drawn independently");
    }
}
