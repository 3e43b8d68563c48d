package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.carve.cluster.MarkerMatrix;
import org.junit.jupiter.api.Test;

class NeuronScoresTest {
    private static double silu(double v) {
        return v / (1 + Math.exp(-v));
    }

    /**
     * Two neurons: 0 aligned with x but with a tiny down projection, 1 slightly off x with a large
     * one. The reference score (normalised rows, no down projection) prefers 0; the contribution
     * |SiLU(g·x)(u·x)|·‖d‖ prefers 1, and its profiles are exactly those products.
     */
    @Test
    void contributionWeighsTheActivationByTheDownProjection() {
        int d = 2;
        float[] gate = {1, 0, 0.9f, 0.1f};     // (inter = 2, hidden)
        float[] up = {1, 0, 0.9f, 0.1f};
        float[] down = {0.01f, 3f, 0f, 4f};    // (hidden, inter): column norms 0.01 and 5
        DenseFfn ffn = new DenseFfn(d, 2, gate, up, down);
        float[] x = {1, 0, 2, 0.1f, 0.5f, -0.05f}; // 3 tokens
        MarkerMatrix reference = NeuronScores.scores(x, ffn, 1, NeuronScores.Importance.SCORE, false, t -> { })
                .markers();
        NeuronScores.Scores contribution = NeuronScores.scores(x, ffn, 1, NeuronScores.Importance.CONTRIBUTION, true,
                t -> { });
        for (int t = 0; t < 3; t++) {
            assertTrue(reference.get(t, 0) && !reference.get(t, 1), "reference marks neuron 0 on token " + t);
            assertTrue(contribution.markers().get(t, 1), "contribution marks neuron 1 on token " + t);
            assertFalse(contribution.markers().get(t, 0));
            for (int i = 0; i < 2; i++) {
                double g = gate[i * d] * x[t * d] + gate[i * d + 1] * x[t * d + 1];
                double u = up[i * d] * x[t * d] + up[i * d + 1] * x[t * d + 1];
                double norm = Math.hypot(down[i], down[2 + i]);
                assertEquals(Math.abs(silu(g) * u) * norm, contribution.profiles()[i * 3 + t], 1e-5,
                        "profile of neuron " + i + " on token " + t);
            }
        }
    }
}
