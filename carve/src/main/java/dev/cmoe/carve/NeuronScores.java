package dev.cmoe.carve;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.carve.cluster.MarkerMatrix;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.llama.Ops;
import java.util.function.IntConsumer;

/**
 * CMoE steps 1–2 on the engine: every neuron's normalised score on every calibration token,
 * h_i = SiLU(x̂·ĝ_i)·(x̂·û_i), and the ATopK markers (the K_a largest |h_i| of each token).
 * Tokens are processed in chunks so the (tokens, intermediate) score matrix never exists whole
 * (unless its profiles are asked for, for clustering on them).
 */
final class NeuronScores {
    /** Tokens per chunk: a (CHUNK, intermediate) float block per step. */
    static final int CHUNK = 1024;

    private NeuronScores() {
    }

    /** What ranks a neuron's activation on a token when its K_a strongest are marked. */
    enum Importance {
        /** The reference: |h_i| with x and the gate/up rows L2-normalised (CMoE's score). */
        SCORE,
        /**
         * The neuron's share of the FFN output: |SiLU(g_i·x)·(u_i·x)|·‖W_down[:, i]‖ with the real
         * rows, the norm of the vector it adds. The reference's score ignores both the row norms and
         * the down projection, so it can favour neurons whose output is small.
         */
        CONTRIBUTION
    }

    /**
     * The markers and, when asked, every neuron's importance profile over the calibration tokens.
     *
     * @param markers the ATopK markers of the chosen importance
     * @param profiles (inter, tokens) neuron-major importance values, or null when not kept
     */
    record Scores(MarkerMatrix markers, float[] profiles) {
    }

    /**
     * @param x (tokens, hidden) FFN inputs
     * @param ffn the layer's dense weights
     * @param progress receives the tokens done so far
     */
    static MarkerMatrix markers(float[] x, DenseFfn ffn, int kAct, IntConsumer progress) {
        return scores(x, ffn, kAct, Importance.SCORE, false, progress).markers();
    }

    /**
     * The markers of {@code importance}, and with {@code keepProfiles} its full (inter, tokens)
     * matrix for clustering on activation profiles.
     */
    static Scores scores(float[] x, DenseFfn ffn, int kAct, Importance importance, boolean keepProfiles,
                         IntConsumer progress) {
        int d = ffn.hidden();
        int inter = ffn.inter();
        int tokens = x.length / d;
        MarkerMatrix markers = new MarkerMatrix(tokens, inter);
        float[] profiles = keepProfiles ? new float[inter * tokens] : null;
        boolean reference = importance == Importance.SCORE;
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray gateT = (reference ? unitRows(m, ffn.gate(), inter, d) : Tensors.create(m, ffn.gate(), inter, d))
                    .transpose(); // (hidden, inter)
            NDArray upT = (reference ? unitRows(m, ffn.up(), inter, d) : Tensors.create(m, ffn.up(), inter, d))
                    .transpose();   // (hidden, inter)
            NDArray downNorms = reference ? null : columnNorms(m, ffn.down(), d, inter); // (inter)
            for (int t0 = 0; t0 < tokens; t0 += CHUNK) {
                int n = Math.min(CHUNK, tokens - t0);
                try (NDManager step = m.newSubManager()) {
                    NDArray xs = Tensors.create(step, java.nio.FloatBuffer.wrap(x, t0 * d, n * d), n, d);
                    NDArray in = reference ? xs.div(xs.norm(new int[] {1}, true).maximum(1e-12f)) : xs; // (n, hidden)
                    NDArray h = Ops.silu(in.matMul(gateT)).mul(in.matMul(upT)).abs();                 // (n, inter)
                    if (!reference) {
                        h = h.mul(downNorms);
                    }
                    NDList top = h.topK(kAct, 1, true, false);
                    long[] idx = top.get(1).toLongArray();                               // (n, kAct)
                    for (int i = 0; i < idx.length; i++) {
                        markers.set(t0 + i / kAct, (int) idx[i]);
                    }
                    if (keepProfiles) {
                        float[] block = h.transpose().toFloatArray(); // (inter, n)
                        for (int i = 0; i < inter; i++) {
                            System.arraycopy(block, i * n, profiles, i * tokens + t0, n);
                        }
                    }
                }
                progress.accept(t0 + n);
            }
        }
        return new Scores(markers, profiles);
    }

    /**
     * The analytical router's score of every listed neuron on every token, with x as the router
     * sees it (not normalised): s_i = |(û_i·x)·SiLU(ĝ_i·x)|. Used to calibrate a router.
     *
     * @return (tokens, neurons.length) row-major
     */
    static float[] routerScores(float[] x, DenseFfn ffn, int[] neurons) {
        int d = ffn.hidden();
        int tokens = x.length / d;
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray gateT = unitRows(m, DenseFfn.rows(ffn.gate(), d, neurons), neurons.length, d).transpose();
            NDArray upT = unitRows(m, DenseFfn.rows(ffn.up(), d, neurons), neurons.length, d).transpose();
            NDArray xs = Tensors.create(m, x, tokens, d);
            return RouterFit.scores(xs, upT, gateT).toFloatArray();
        }
    }

    /**
     * W (rows, hidden) with every row L2-normalised, on the engine; the unnormalised copy is freed
     * at once, as on a 7B layer it is as large as the result.
     */
    private static NDArray unitRows(NDManager m, float[] w, int rows, int d) {
        try (NDManager tmp = m.newSubManager()) {
            NDArray a = Tensors.create(tmp, w, rows, d);
            NDArray unit = a.div(a.norm(new int[] {1}, true).maximum(1e-12f));
            unit.attach(m);
            return unit;
        }
    }

    /** The L2 norm of every column of W (rows, cols), without keeping W on the engine. */
    private static NDArray columnNorms(NDManager m, float[] w, int rows, int cols) {
        try (NDManager tmp = m.newSubManager()) {
            NDArray norms = Tensors.create(tmp, w, rows, cols).norm(new int[] {0});
            norms.attach(m);
            return norms;
        }
    }
}
