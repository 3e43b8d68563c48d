package dev.cmoe.carve;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.llama.Ops;

/**
 * CMoE step 6 and our variants of it: the analytical router's rows, classifier (N_r, hidden) and
 * gate (N_r, hidden), built without training. All variants keep the router's form
 * s_j = |(classifier_j·x)·SiLU(gate_j·x)|, so a carved model loads and serves the same way.
 */
final class RouterFit {
    /** Which rows the router gets. */
    enum Kind {
        /** The reference: L2-normalised W_up and W_gate rows of each expert's representative neuron. */
        REPRESENTATIVE,
        /** The normalised mean of the members' normalised rows (ExpertWeaver's idea, both rows). */
        MEAN,
        /**
         * Calibrated on the calibration tokens: per expert the member whose router score best
         * correlates with the expert's actual output norm, and a scale α_j ≥ 0 on its classifier row
         * fitted by least squares (α·s_j ≈ ‖expert_j(x)‖), so scores of different experts compare.
         */
        FITTED,
        /**
         * Least squares on the calibration tokens: the gate row stays the representative's, and
         * the classifier row c_j minimises Σ_t ((c_j·x_t)·SiLU(gate_j·x_t) − ‖expert_j(x_t)‖)² (ridge),
         * a linear problem because the gate factor is fixed. The router then predicts each
         * expert's output norm in its own analytical form.
         */
        LSQ,
        /** Ablation: seeded random unit rows, to show what the analytical router is worth. */
        RANDOM
    }

    /** Ridge strength relative to the mean diagonal of the normal equations. */
    static final double RIDGE = 1e-4;

    /**
     * The router rows: classifier and gate, each (N_r, hidden) row-major, and per expert the
     * neuron they come from (for {@link Kind#MEAN}, the representative they replace).
     */
    record Rows(float[] classifier, float[] gate, int[] representatives) {
    }

    private RouterFit() {
    }

    static Rows reference(DenseFfn ffn, int[] representatives) {
        int d = ffn.hidden();
        int nr = representatives.length;
        float[] classifier = new float[nr * d];
        float[] gate = new float[nr * d];
        for (int j = 0; j < nr; j++) {
            System.arraycopy(DenseFfn.unitRow(ffn.up(), d, representatives[j]), 0, classifier, j * d, d);
            System.arraycopy(DenseFfn.unitRow(ffn.gate(), d, representatives[j]), 0, gate, j * d, d);
        }
        return new Rows(classifier, gate, representatives.clone());
    }

    /** Seeded random unit classifier and gate rows (ablation). */
    static Rows random(int d, int[] representatives, long seed) {
        int nr = representatives.length;
        java.util.Random r = new java.util.Random(seed);
        float[] classifier = new float[nr * d];
        float[] gate = new float[nr * d];
        for (float[] rows : new float[][] {classifier, gate}) {
            for (int j = 0; j < nr; j++) {
                double norm = 0;
                for (int i = 0; i < d; i++) {
                    rows[j * d + i] = (float) r.nextGaussian();
                    norm += rows[j * d + i] * rows[j * d + i];
                }
                for (int i = 0; i < d; i++) {
                    rows[j * d + i] /= (float) Math.sqrt(norm);
                }
            }
        }
        return new Rows(classifier, gate, representatives.clone());
    }

    static Rows mean(DenseFfn ffn, int[][] experts, int[] representatives) {
        int d = ffn.hidden();
        int nr = experts.length;
        float[] classifier = new float[nr * d];
        float[] gate = new float[nr * d];
        for (int j = 0; j < nr; j++) {
            System.arraycopy(meanUnitRow(ffn.up(), d, experts[j]), 0, classifier, j * d, d);
            System.arraycopy(meanUnitRow(ffn.gate(), d, experts[j]), 0, gate, j * d, d);
        }
        return new Rows(classifier, gate, representatives.clone());
    }

    /**
     * See {@link Kind#FITTED}.
     *
     * @param x (tokens, hidden) the calibration FFN inputs of this layer
     */
    static Rows fitted(DenseFfn ffn, int[][] experts, float[] x) {
        int d = ffn.hidden();
        int tokens = x.length / d;
        int nr = experts.length;
        float[] norms = expertNorms(x, ffn, experts); // (tokens, N_r)
        int[] chosen = new int[nr];
        double[] alpha = new double[nr];
        for (int j = 0; j < nr; j++) {
            int m = experts[j].length;
            float[] s = NeuronScores.routerScores(x, ffn, experts[j]); // (tokens, m)
            double bestCorr = Double.NEGATIVE_INFINITY;
            for (int i = 0; i < m; i++) {
                double corr = correlation(s, i, m, norms, j, nr, tokens);
                if (corr > bestCorr) {
                    bestCorr = corr;
                    chosen[j] = experts[j][i];
                    double sy = 0;
                    double ss = 0;
                    for (int t = 0; t < tokens; t++) {
                        sy += (double) s[t * m + i] * norms[t * nr + j];
                        ss += (double) s[t * m + i] * s[t * m + i];
                    }
                    alpha[j] = ss > 0 ? Math.max(0, sy / ss) : 1;
                }
            }
        }
        Rows rows = reference(ffn, chosen);
        for (int j = 0; j < nr; j++) {
            for (int k = 0; k < d; k++) {
                rows.classifier()[j * d + k] *= (float) alpha[j];
            }
        }
        return rows;
    }

    /**
     * The same rows with every classifier row divided by one factor, chosen so that the router's
     * scores s on the calibration tokens spread by 1 across the experts (the mean over tokens of
     * their standard deviation over experts). Every s_j scales by the same factor, so the
     * selection without a bias is unchanged; what changes is s' = softmax(s). A fitted router's s
     * predicts output norms, which can be large, and its softmax then saturates: the runners-up get
     * s' of exactly 0, every bias b then orders them the same way on every token, and no b can
     * balance the load. With unit spread, s' + b stays a ranking b can shift token by token.
     *
     * @param x (tokens, hidden) the calibration FFN inputs of this layer
     */
    static Rows withUnitSpread(Rows rows, float[] x, int d) {
        int tokens = x.length / d;
        int nr = rows.representatives().length;
        double spread;
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray xs = Tensors.create(m, x, tokens, d);
            NDArray c = Tensors.create(m, rows.classifier(), nr, d);
            NDArray g = Tensors.create(m, rows.gate(), nr, d);
            NDArray s = scores(xs, c.transpose(), g.transpose()); // (T, N_r)
            NDArray centred = s.sub(s.mean(new int[] {1}, true));
            spread = centred.square().mean(new int[] {1}).sqrt().mean().getFloat();
        }
        if (!(spread > 0) || !Double.isFinite(spread)) {
            return rows;
        }
        float[] classifier = rows.classifier().clone();
        for (int i = 0; i < classifier.length; i++) {
            classifier[i] = (float) (classifier[i] / spread);
        }
        return new Rows(classifier, rows.gate(), rows.representatives());
    }

    /** See {@link Kind#LSQ}. x: (tokens, hidden), the calibration FFN inputs of this layer. */
    static Rows leastSquares(DenseFfn ffn, int[][] experts, int[] representatives, float[] x) {
        int d = ffn.hidden();
        int tokens = x.length / d;
        int nr = experts.length;
        float[] norms = expertNorms(x, ffn, experts); // (tokens, N_r)
        Rows rows = reference(ffn, representatives);
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray xs = Tensors.create(m, x, tokens, d).toType(DataType.FLOAT64, false);        // (T, hidden)
            NDArray gates = Tensors.create(m, rows.gate(), nr, d).toType(DataType.FLOAT64, false); // (N_r, hidden)
            NDArray sigma = Ops.silu(xs.matMul(gates.transpose()));                                // (T, N_r)
            NDArray y = Tensors.create(m, norms, tokens, nr).toType(DataType.FLOAT64, false);
            for (int j = 0; j < nr; j++) {
                try (NDScope scope = new NDScope()) { // frees this expert's (T, hidden) temporaries
                    scope.suppressNotUsedWarning();
                    NDArray z = xs.mul(sigma.get(":, {}:{}", j, j + 1));                           // (T, hidden)
                    double[] gram = z.transpose().matMul(z).toDoubleArray();                        // (hidden, hidden)
                    double[] rhs = z.transpose().matMul(y.get(":, {}:{}", j, j + 1)).toDoubleArray(); // (hidden)
                    double[] c = ridgeSolve(gram, rhs, d);
                    for (int k = 0; k < d; k++) {
                        rows.classifier()[j * d + k] = (float) c[k];
                    }
                }
            }
        }
        return rows;
    }

    /**
     * The analytical router's scores s = |(x·Cᵀ) ⊙ SiLU(x·Gᵀ)|, (tokens, rows), for classifier and
     * gate rows given transposed, (hidden, rows): of a fitted router, or of single neurons.
     */
    static NDArray scores(NDArray xs, NDArray classifierT, NDArray gateT) {
        return xs.matMul(classifierT).mul(Ops.silu(xs.matMul(gateT))).abs();
    }

    /** Solves (A + λI) c = b for symmetric positive semi-definite A (n, n) by Cholesky, λ = RIDGE·mean diag. */
    static double[] ridgeSolve(double[] a, double[] b, int n) {
        double trace = 0;
        for (int i = 0; i < n; i++) {
            trace += a[i * n + i];
        }
        double lambda = RIDGE * trace / n + 1e-12;
        double[] l = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j <= i; j++) {
                double sum = a[i * n + j] + (i == j ? lambda : 0);
                for (int k = 0; k < j; k++) {
                    sum -= l[i * n + k] * l[j * n + k];
                }
                l[i * n + j] = i == j ? Math.sqrt(Math.max(sum, 1e-300)) : sum / l[j * n + j];
            }
        }
        double[] z = new double[n];
        for (int i = 0; i < n; i++) {
            double sum = b[i];
            for (int k = 0; k < i; k++) {
                sum -= l[i * n + k] * z[k];
            }
            z[i] = sum / l[i * n + i];
        }
        double[] c = new double[n];
        for (int i = n - 1; i >= 0; i--) {
            double sum = z[i];
            for (int k = i + 1; k < n; k++) {
                sum -= l[k * n + i] * c[k];
            }
            c[i] = sum / l[i * n + i];
        }
        return c;
    }

    /** ‖expert_j(x_t)‖₂ for every token and routed expert, on the engine: (tokens, N_r). */
    static float[] expertNorms(float[] x, DenseFfn ffn, int[][] experts) {
        int d = ffn.hidden();
        int tokens = x.length / d;
        int nr = experts.length;
        float[] out = new float[tokens * nr];
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray xs = Tensors.create(m, x, tokens, d);
            for (int j = 0; j < nr; j++) {
                int size = experts[j].length;
                try (NDScope scope = new NDScope()) { // frees this expert's (T, m) and (T, hidden) temporaries
                    scope.suppressNotUsedWarning();
                    NDArray gate = Tensors.create(m, DenseFfn.rows(ffn.gate(), d, experts[j]), size, d);
                    NDArray up = Tensors.create(m, DenseFfn.rows(ffn.up(), d, experts[j]), size, d);
                    NDArray down = Tensors.create(m, ffn.downColumns(experts[j]), d, size);
                    float[] norm = Ops.swiglu(xs, gate.transpose(), up.transpose(), down.transpose())
                            .norm(new int[] {1}).toFloatArray();
                    for (int t = 0; t < tokens; t++) {
                        out[t * nr + j] = norm[t];
                    }
                }
            }
        }
        return out;
    }

    /** Pearson correlation over tokens of column i of s (tokens, m) and column j of y (tokens, nr). */
    private static double correlation(float[] s, int i, int m, float[] y, int j, int nr, int tokens) {
        double ms = 0;
        double my = 0;
        for (int t = 0; t < tokens; t++) {
            ms += s[t * m + i];
            my += y[t * nr + j];
        }
        ms /= tokens;
        my /= tokens;
        double sxy = 0;
        double sxx = 0;
        double syy = 0;
        for (int t = 0; t < tokens; t++) {
            double a = s[t * m + i] - ms;
            double b = y[t * nr + j] - my;
            sxy += a * b;
            sxx += a * a;
            syy += b * b;
        }
        return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : -1;
    }

    private static float[] meanUnitRow(float[] w, int d, int[] members) {
        double[] sum = new double[d];
        for (int i : members) {
            float[] u = DenseFfn.unitRow(w, d, i);
            for (int k = 0; k < d; k++) {
                sum[k] += u[k];
            }
        }
        double ss = 0;
        for (double v : sum) {
            ss += v * v;
        }
        double inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
        float[] out = new float[d];
        for (int k = 0; k < d; k++) {
            out[k] = (float) (sum[k] * inv);
        }
        return out;
    }
}
