package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.moe.Routing;
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

    @Test
    void unitSpreadKeepsTheSelectionAndUnsaturatesTheSoftmax() {
        int d = 16;
        int nr = 6;
        int tokens = 400;
        Random r = new Random(5);
        float[] x = gaussian(r, tokens * d, 1);
        // rows scaled up as a fitted router's α can be: the scores are tens apart, their softmax one-hot
        RouterFit.Rows rows = new RouterFit.Rows(gaussian(r, nr * d, 8), gaussian(r, nr * d, 1), new int[nr]);
        RouterFit.Rows unit = RouterFit.withUnitSpread(rows, x, d);
        float[] before = probs(rows, x, tokens, d);
        float[] after = probs(unit, x, tokens, d);
        float[] raw;
        try (NDManager m = NDManager.newBaseManager()) {
            raw = scores(m, rows, x, tokens, d).toFloatArray();
        }
        // the router's intended choice: the top 3 of s itself
        int[] wanted = topThree(raw, tokens, nr);
        assertArrayEquals(wanted, topThree(after, tokens, nr), "one common factor on s keeps its ranking");
        assertTrue(!java.util.Arrays.equals(wanted, topThree(before, tokens, nr)),
                "fixture: the saturated softmax ties its zeros, and the tie order (expert id) picks instead of s");
        assertEquals(1.0, spread(unit, x, tokens, d), 1e-3);
        assertArrayEquals(rows.gate(), unit.gate());
        assertTrue(zeros(before) > tokens, "fixture: a saturated softmax has exact zeros, got " + zeros(before));
        assertEquals(0, zeros(after), "unit spread leaves no s' at exactly 0");
    }

    private static int[] topThree(float[] keys, int tokens, int nr) {
        float[] zero = new float[nr];
        Routing r = Routing.select(keys, tokens, 3, zero, zero);
        int[] picked = new int[tokens * 3];
        for (int t = 0; t < tokens; t++) {
            for (int k = 0; k < 3; k++) {
                picked[t * 3 + k] = r.expert(t, k);
            }
        }
        return picked;
    }

    private static float[] gaussian(Random r, int n, double std) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (std * r.nextGaussian());
        }
        return v;
    }

    private static NDArray scores(NDManager m, RouterFit.Rows rows, float[] x, int tokens, int d) {
        int nr = rows.representatives().length;
        NDArray xs = Tensors.create(m, x, tokens, d);
        return xs.matMul(Tensors.create(m, rows.classifier(), nr, d).transpose())
                .mul(Ops.silu(xs.matMul(Tensors.create(m, rows.gate(), nr, d).transpose()))).abs();
    }

    private static float[] probs(RouterFit.Rows rows, float[] x, int tokens, int d) {
        try (NDManager m = NDManager.newBaseManager()) {
            return scores(m, rows, x, tokens, d).softmax(-1).toFloatArray();
        }
    }

    /** Mean over tokens of the standard deviation of s over the experts, computed independently. */
    private static double spread(RouterFit.Rows rows, float[] x, int tokens, int d) {
        int nr = rows.representatives().length;
        float[] s;
        try (NDManager m = NDManager.newBaseManager()) {
            s = scores(m, rows, x, tokens, d).toFloatArray();
        }
        double sum = 0;
        for (int t = 0; t < tokens; t++) {
            double mean = 0;
            for (int j = 0; j < nr; j++) {
                mean += s[t * nr + j] / nr;
            }
            double var = 0;
            for (int j = 0; j < nr; j++) {
                var += (s[t * nr + j] - mean) * (s[t * nr + j] - mean) / nr;
            }
            sum += Math.sqrt(var);
        }
        return sum / tokens;
    }

    private static int zeros(float[] p) {
        int n = 0;
        for (float v : p) {
            n += v == 0f ? 1 : 0;
        }
        return n;
    }
}
