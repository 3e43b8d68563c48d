package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Random;
import org.junit.jupiter.api.Test;

class RouterFitTest {
    @Test
    void ridgeSolveSolvesTheNormalEquations() {
        int n = 7;
        Random r = new Random(1);
        double[] m = new double[20 * n];
        for (int i = 0; i < m.length; i++) {
            m[i] = r.nextGaussian();
        }
        double[] a = new double[n * n]; // MᵀM: symmetric positive definite
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                for (int k = 0; k < 20; k++) {
                    a[i * n + j] += m[k * n + i] * m[k * n + j];
                }
            }
        }
        double[] want = {1, -2, 0.5, 3, 0, -1, 2};
        double[] b = new double[n];
        double trace = 0;
        for (int i = 0; i < n; i++) {
            trace += a[i * n + i];
        }
        double lambda = RouterFit.RIDGE * trace / n + 1e-12;
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                b[i] += (a[i * n + j] + (i == j ? lambda : 0)) * want[j];
            }
        }
        double[] got = RouterFit.ridgeSolve(a, b, n);
        for (int i = 0; i < n; i++) {
            assertEquals(want[i], got[i], 1e-9, "c[" + i + "]");
        }
    }
}
