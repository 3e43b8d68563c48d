package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.moe.Routing;
import java.util.Random;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;

class LoadBalancerTest {
    /** Softmax-like probabilities where expert 0 is favoured on most tokens: a skewed router. */
    static float[] skewed(int tokens, int experts, Random r) {
        float[] p = new float[tokens * experts];
        for (int t = 0; t < tokens; t++) {
            double sum = 0;
            for (int j = 0; j < experts; j++) {
                double v = Math.exp(0.3 * r.nextGaussian() + (j == 0 ? 0.25 : 0) + (j == 1 ? 0.1 : 0));
                p[t * experts + j] = (float) v;
                sum += v;
            }
            for (int j = 0; j < experts; j++) {
                p[t * experts + j] /= (float) sum;
            }
        }
        return p;
    }

    @Test
    void evensASkewedLoadAndLeavesTheOutputWeightsAlone() {
        int tokens = 2000;
        int experts = 7;
        float[] probs = skewed(tokens, experts, new Random(1));
        float[] scale = {0.5f, -0.2f, 1.5f, 0f, 0.3f, 2f, -1f};
        LoadBalancer.Result r = LoadBalancer.balance(probs, tokens, 2, scale, new float[experts], 200, 1e-3,
                done -> { });
        assertTrue(r.imbalanceBefore() > 1.5, "skewed fixture: " + r.imbalanceBefore());
        assertTrue(r.imbalanceAfter() < 1.1, r.imbalanceBefore() + " -> " + r.imbalanceAfter());
        assertEquals(2L * tokens, LongStream.of(r.loadsAfter()).sum());
        assertTrue(r.bias()[0] < 0, "the favoured expert is pushed down");
        // the bias only picks experts: each selected expert's weight is still 1 + s'·u
        Routing after = Routing.select(probs, tokens, 2, r.bias(), scale);
        for (int t = 0; t < tokens; t++) {
            for (int k = 0; k < 2; k++) {
                int j = after.expert(t, k);
                assertEquals(1f + probs[t * experts + j] * scale[j], after.gate(t, k), 0f);
            }
        }
        assertArrayEquals(r.loadsAfter(), after.loads());
    }

    @Test
    void annealedRuleSettlesWhereAFixedLargeStepKeepsOvershooting() {
        int tokens = 2000;
        int experts = 8;
        float[] probs = skewed(tokens, experts, new Random(3));
        float[] scale = new float[experts];
        double gamma = 0.05; // far above the probability gaps: a fixed step jumps past the balance point
        LoadBalancer.Result fixed = LoadBalancer.balance(probs, tokens, 2, scale, new float[experts], 300, gamma,
                done -> { });
        LoadBalancer.Result annealed = LoadBalancer.balanceAnnealed(probs, tokens, 2, scale, new float[experts], 300,
                gamma, done -> { });
        assertTrue(annealed.imbalanceBefore() > 1.5, "skewed fixture: " + annealed.imbalanceBefore());
        assertTrue(annealed.imbalanceAfter() < 1.05, "annealed: " + annealed.imbalanceAfter());
        assertTrue(fixed.imbalanceAfter() > annealed.imbalanceAfter() + 0.1,
                "fixed " + fixed.imbalanceAfter() + " vs annealed " + annealed.imbalanceAfter());
        // the reported loads are those of the returned b
        assertArrayEquals(annealed.loadsAfter(), Routing.select(probs, tokens, 2, annealed.bias(), scale).loads());
    }

    @Test
    void quantileRuleBalancesInAFewSweepsWithNoStepSize() {
        int tokens = 3000;
        int experts = 10;
        float[] probs = skewed(tokens, experts, new Random(4));
        float[] scale = new float[experts];
        LoadBalancer.Result r = LoadBalancer.balance(LoadBalancer.Rule.QUANTILE, probs, tokens, 3, scale,
                new float[experts], 5, 1e-3, done -> { });
        assertTrue(r.imbalanceBefore() > 1.5, "skewed fixture: " + r.imbalanceBefore());
        assertTrue(r.imbalanceAfter() < 1.03, r.imbalanceBefore() + " -> " + r.imbalanceAfter());
        assertTrue(r.bias()[0] < r.bias()[experts - 1], "the favoured expert is pushed below the others");
        assertArrayEquals(r.loadsAfter(), Routing.select(probs, tokens, 3, r.bias(), scale).loads());
        // the sign rule at the same γ and rounds is still far from balance: its step is what limits it
        LoadBalancer.Result sign = LoadBalancer.balance(LoadBalancer.Rule.SIGN, probs, tokens, 3, scale,
                new float[experts], 5, 1e-3, done -> { });
        assertTrue(sign.imbalanceAfter() > r.imbalanceAfter() + 0.2,
                "sign " + sign.imbalanceAfter() + " vs quantile " + r.imbalanceAfter());
    }

    @Test
    void quantileRuleKeepsTheStartWhenEveryExpertIsAlwaysSelected() {
        float[] probs = skewed(50, 3, new Random(6));
        float[] bias = {0.2f, 0f, -0.1f};
        LoadBalancer.Result r = LoadBalancer.balance(LoadBalancer.Rule.QUANTILE, probs, 50, 3, new float[3], bias, 4,
                1e-3, done -> { });
        assertArrayEquals(bias, r.bias());
        assertArrayEquals(new long[] {50, 50, 50}, r.loadsAfter());
    }

    @Test
    void zeroStepsChangeNothing() {
        float[] probs = skewed(100, 4, new Random(2));
        float[] bias = {0.01f, 0, 0, -0.01f};
        LoadBalancer.Result r = LoadBalancer.balance(probs, 100, 1, new float[4], bias, 0, 1e-3, done -> { });
        assertArrayEquals(bias, r.bias());
        assertArrayEquals(r.loadsBefore(), r.loadsAfter());
    }

    @Test
    void imbalanceIsMaxOverMean() {
        assertEquals(1.0, LoadBalancer.imbalance(new long[] {5, 5, 5}));
        assertEquals(2.0, LoadBalancer.imbalance(new long[] {10, 0, 5, 5}));
    }
}
