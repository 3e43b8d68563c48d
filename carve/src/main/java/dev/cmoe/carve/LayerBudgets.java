package dev.cmoe.carve;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import java.nio.FloatBuffer;
import java.util.Arrays;

/**
 * Per-layer routed-expert budgets: how many routed experts each layer selects per token, shared
 * out so that the layers whose carving costs the most get more, within the same total as N_k in
 * every layer. Layers differ a lot: the first layer's FFN writes most of the residual stream it
 * is added to, so its carving error weighs far more than a middle layer's.
 *
 * <p>A layer's error for budget k is measured on its calibration tokens, right after it is carved:
 * the squared distance between the dense FFN's output and the carved one's with each token's k
 * best experts (in the router's order, bias included), over the squared norm of the residual
 * stream entering the layer: the size of the change the next layers' RMSNorms see. The budgets then
 * minimise the summed error by marginal analysis: each layer starts at the floor, and each further
 * unit goes to the layer whose error it lowers most.
 */
final class LayerBudgets {
    /** Calibration tokens a layer's error curve is measured on: the curve needs no more. */
    static final int MAX_TOKENS = 1024;
    /** Tokens per engine call while measuring: bounds the experts' outputs held at once. */
    static final int CHUNK = 256;

    private LayerBudgets() {
    }

    /**
     * err[k] for k = 0 … N_r routed experts per token, relative to the residual stream.
     *
     * @param x the layer's FFN input, (tokens, d) row-major; the first {@link #MAX_TOKENS} are used
     * @param residual the residual stream entering the layer, rows in the order of {@code x}
     * @param probs the router's s' for those rows, (tokens, N_r)
     */
    static double[] errors(float[] x, float[] residual, float[] probs, int d, FeedForward dense,
                           MoeFeedForward carved) {
        int routed = carved.config().routed();
        int tokens = Math.min(MAX_TOKENS, x.length / d);
        double[] err = new double[routed + 1];
        double stream = 0;
        for (int i = 0; i < tokens * d; i++) {
            stream += (double) residual[i] * residual[i];
        }
        // each token's experts in the order the router would pick them, with their output weights
        Routing order = Routing.select(Arrays.copyOf(probs, tokens * routed), tokens, routed, carved.bias(),
                carved.scale());
        for (int t0 = 0; t0 < tokens; t0 += CHUNK) {
            int n = Math.min(CHUNK, tokens - t0);
            float[] left; // dense output minus what the carved layer has added so far, (n, d)
            float[][] outputs = new float[routed][];
            try (NDManager m = NDManager.newBaseManager()) {
                NDArray xs = Tensors.create(m, FloatBuffer.wrap(x, t0 * d, n * d), n, d);
                NDArray y = dense.forward(xs);
                left = (carved.config().shared() > 0 ? y.sub(carved.shared(xs)) : y).toFloatArray();
                for (int j = 0; j < routed; j++) {
                    outputs[j] = carved.expert(j, xs).toFloatArray();
                }
            }
            for (int t = 0; t < n; t++) {
                int row = t * d;
                err[0] += squares(left, row, d);
                for (int r = 0; r < routed; r++) {
                    int j = order.expert(t0 + t, r);
                    float g = order.gate(t0 + t, r);
                    float[] o = outputs[j];
                    for (int i = 0; i < d; i++) {
                        left[row + i] -= g * o[row + i];
                    }
                    err[r + 1] += squares(left, row, d);
                }
            }
        }
        for (int k = 0; k <= routed; k++) {
            err[k] /= Math.max(stream, Double.MIN_NORMAL);
        }
        return err;
    }

    private static double squares(float[] v, int from, int n) {
        double s = 0;
        for (int i = from; i < from + n; i++) {
            s += (double) v[i] * v[i];
        }
        return s;
    }

    /**
     * Budgets summing to {@code total} that minimise Σ errors[l][k_l], each within
     * [{@code floor}, N_r]: from the floor, every further unit goes to the layer whose error it
     * lowers most (the lowest layer on ties). Marginal analysis is exact when each curve's gains
     * shrink as k grows, as a layer's error does with more of its best experts.
     */
    static int[] allocate(double[][] errors, int total, int floor) {
        int layers = errors.length;
        int[] k = new int[layers];
        Arrays.fill(k, floor);
        int left = total - floor * layers;
        if (left < 0) {
            throw new IllegalArgumentException("a budget of " + total + " cannot give " + layers + " layers "
                    + floor + " each");
        }
        for (; left > 0; left--) {
            int best = -1;
            double gain = Double.NEGATIVE_INFINITY;
            for (int l = 0; l < layers; l++) {
                if (k[l] + 1 < errors[l].length) {
                    double g = errors[l][k[l]] - errors[l][k[l] + 1];
                    if (g > gain) {
                        gain = g;
                        best = l;
                    }
                }
            }
            if (best < 0) {
                throw new IllegalArgumentException("a budget of " + total + " exceeds every layer's routed experts");
            }
            k[best]++;
        }
        return k;
    }
}
