package dev.cmoe.carve.cluster;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

class MarkerMatrixTest {

    /** Random markers with the given density, and a dense boolean twin to check against. */
    static boolean[][] fill(MarkerMatrix a, Random r, double density) {
        boolean[][] dense = new boolean[a.tokens()][a.neurons()];
        for (int t = 0; t < a.tokens(); t++) {
            for (int i = 0; i < a.neurons(); i++) {
                if (r.nextDouble() < density) {
                    a.set(t, i);
                    dense[t][i] = true;
                }
            }
        }
        return dense;
    }

    /** The slow twin: Σ_t |x_t − c_t| over every token, in double. */
    static double naiveL1(boolean[][] dense, int neuron, float[] centroid) {
        double sum = 0;
        for (int t = 0; t < dense.length; t++) {
            sum += Math.abs((dense[t][neuron] ? 1.0 : 0.0) - centroid[t]);
        }
        return sum;
    }

    @Test
    void setGetAndRates() {
        // 130 tokens: the last word of each column is partial.
        MarkerMatrix a = new MarkerMatrix(130, 7);
        boolean[][] dense = fill(a, new Random(1), 0.3);
        double[] rates = a.rates();
        for (int i = 0; i < 7; i++) {
            int count = 0;
            for (int t = 0; t < 130; t++) {
                assertEquals(dense[t][i], a.get(t, i), "token " + t + " neuron " + i);
                count += dense[t][i] ? 1 : 0;
            }
            assertEquals(count / 130.0, a.rate(i), 1e-15);
            assertEquals(count / 130.0, rates[i], 1e-15);
        }
        a.set(129, 6);
        assertTrue(a.get(129, 6));
        assertFalse(new MarkerMatrix(64, 1).get(63, 0));
    }

    @Test
    void meanIsTheAverageColumn() {
        MarkerMatrix a = new MarkerMatrix(77, 9);
        boolean[][] dense = fill(a, new Random(2), 0.4);
        int[] members = {0, 3, 4, 8};
        float[] mean = a.mean(members);
        for (int t = 0; t < 77; t++) {
            int count = 0;
            for (int i : members) {
                count += dense[t][i] ? 1 : 0;
            }
            assertEquals(count / 4.0f, mean[t], 0f, "token " + t);
        }
        float[] column = a.column(3);
        assertArrayEquals(column, a.mean(new int[] {3}));
    }

    @Test
    void l1ToCentroidsMatchesNaiveLoop() {
        Random r = new Random(3);
        for (int tokens : new int[] {1, 63, 64, 65, 500}) {
            int neurons = 40;
            MarkerMatrix a = new MarkerMatrix(tokens, neurons);
            boolean[][] dense = fill(a, r, 0.05 + 0.3 * r.nextDouble());
            float[][] centroids = new float[5][];
            centroids[0] = a.mean(new int[] {1, 2, 3});
            centroids[1] = a.column(7);
            centroids[2] = new float[tokens];
            centroids[3] = new float[tokens];
            centroids[4] = new float[tokens];
            for (int t = 0; t < tokens; t++) {
                centroids[3][t] = r.nextFloat();
                centroids[4][t] = 1f;
            }
            int[] listed = {39, 0, 5, 5, 17, 22, 38};
            double[] l1 = a.l1ToCentroids(listed, centroids);
            assertEquals(listed.length * centroids.length, l1.length);
            for (int r2 = 0; r2 < listed.length; r2++) {
                for (int j = 0; j < centroids.length; j++) {
                    double expected = naiveL1(dense, listed[r2], centroids[j]);
                    assertEquals(expected, l1[r2 * centroids.length + j], 1e-9 * (1 + expected),
                            "tokens " + tokens + " neuron " + listed[r2] + " centroid " + j);
                    assertEquals(expected, a.l1(listed[r2], centroids[j]), 1e-9 * (1 + expected));
                }
            }
        }
    }

    @Test
    void l1ToCentroidsMatchesNaiveLoopAcrossParallelChunks() {
        // More neurons than one parallel chunk, sparse like real ATopK markers.
        Random r = new Random(4);
        int tokens = 300;
        int neurons = 1500;
        MarkerMatrix a = new MarkerMatrix(tokens, neurons);
        boolean[][] dense = fill(a, r, 0.01);
        float[][] centroids = {a.mean(new int[] {0, 1, 2, 3, 4}), a.column(10), a.mean(new int[] {7, 99})};
        int[] listed = new int[neurons];
        for (int i = 0; i < neurons; i++) {
            listed[i] = neurons - 1 - i;
        }
        double[] l1 = a.l1ToCentroids(listed, centroids);
        for (int r2 = 0; r2 < neurons; r2++) {
            for (int j = 0; j < centroids.length; j++) {
                double expected = naiveL1(dense, listed[r2], centroids[j]);
                assertEquals(expected, l1[r2 * 3 + j], 1e-9 * (1 + expected));
            }
        }
    }

    @Test
    void binaryCentroidsGiveIntegerHammingDistances() {
        MarkerMatrix a = new MarkerMatrix(200, 6);
        boolean[][] dense = fill(a, new Random(5), 0.2);
        double[] l1 = a.l1ToCentroids(new int[] {0, 1, 2, 3, 4, 5}, new float[][] {a.column(2)});
        for (int i = 0; i < 6; i++) {
            int hamming = 0;
            for (int t = 0; t < 200; t++) {
                hamming += dense[t][i] != dense[t][2] ? 1 : 0;
            }
            assertEquals(hamming, l1[i], 0, "neuron " + i);
        }
    }

    @Test
    void invalidInputIsRejected() {
        MarkerMatrix a = new MarkerMatrix(10, 3);
        var length = assertThrows(IllegalArgumentException.class,
                () -> a.l1ToCentroids(new int[] {0}, new float[][] {new float[9]}));
        assertTrue(length.getMessage().contains("9") && length.getMessage().contains("10"), length.getMessage());
        var token = assertThrows(IndexOutOfBoundsException.class, () -> a.set(10, 0));
        assertTrue(token.getMessage().contains("token 10"), token.getMessage());
        var neuron = assertThrows(IndexOutOfBoundsException.class, () -> a.l1ToCentroids(new int[] {3}, new float[][] {new float[10]}));
        assertTrue(neuron.getMessage().contains("neuron 3"), neuron.getMessage());
        assertThrows(IllegalArgumentException.class, () -> a.mean(new int[0]));
        assertThrows(IllegalArgumentException.class, () -> new MarkerMatrix(0, 3));
    }
}
