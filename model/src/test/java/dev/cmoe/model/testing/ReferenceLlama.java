package dev.cmoe.model.testing;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.arch.TensorNames;

/**
 * The slow twin of the DJL transformer: a plain-Java, double-precision forward over a whole
 * sequence with no cache and no batching, written from the Hugging Face LLaMA recipe. Tests
 * compare the fast path against it; it must never be used outside tests.
 */
public final class ReferenceLlama {
    private final ModelConfig c;
    private final RandomModel w;

    public ReferenceLlama(RandomModel weights) {
        this.c = weights.config();
        this.w = weights;
    }

    /** Logits for every position of {@code tokens}: (tokens, vocab). */
    public double[][] logits(int[] tokens) {
        int n = tokens.length;
        int d = c.hiddenSize();
        double[][] x = new double[n][];
        float[] embed = w.values(TensorNames.EMBED);
        for (int t = 0; t < n; t++) {
            x[t] = row(embed, tokens[t], d);
        }
        for (int l = 0; l < c.numLayers(); l++) {
            String p = TensorNames.layer(l);
            double[][] attn = attention(p, rmsNorm(x, w.values(p + "input_layernorm.weight")));
            for (int t = 0; t < n; t++) {
                add(x[t], attn[t]);
            }
            double[][] h = rmsNorm(x, w.values(p + "post_attention_layernorm.weight"));
            for (int t = 0; t < n; t++) {
                add(x[t], ffn(p, h[t]));
            }
        }
        double[][] h = rmsNorm(x, w.values(TensorNames.FINAL_NORM));
        float[] head = w.values(c.tieWordEmbeddings() ? TensorNames.EMBED : TensorNames.LM_HEAD);
        double[][] logits = new double[n][];
        for (int t = 0; t < n; t++) {
            logits[t] = matVec(head, c.vocabSize(), d, h[t]);
        }
        return logits;
    }

    private double[][] attention(String p, double[][] h) {
        int n = h.length;
        int d = c.hiddenSize();
        int hd = c.headDim();
        int group = c.numHeads() / c.numKvHeads();
        double[][] q = new double[n][];
        double[][] k = new double[n][];
        double[][] v = new double[n][];
        for (int t = 0; t < n; t++) {
            q[t] = proj(p + "self_attn.q_proj", c.qDim(), d, h[t]);
            k[t] = proj(p + "self_attn.k_proj", c.kvDim(), d, h[t]);
            v[t] = proj(p + "self_attn.v_proj", c.kvDim(), d, h[t]);
            rope(q[t], c.numHeads(), t);
            rope(k[t], c.numKvHeads(), t);
        }
        double[][] out = new double[n][c.qDim()];
        for (int t = 0; t < n; t++) {
            for (int head = 0; head < c.numHeads(); head++) {
                int kvHead = head / group;
                int lo = c.slidingWindow() > 0 ? Math.max(0, t - c.slidingWindow() + 1) : 0;
                double[] scores = new double[t + 1 - lo];
                double max = Double.NEGATIVE_INFINITY;
                for (int s = lo; s <= t; s++) {
                    double dot = 0;
                    for (int i = 0; i < hd; i++) {
                        dot += q[t][head * hd + i] * k[s][kvHead * hd + i];
                    }
                    scores[s - lo] = dot / Math.sqrt(hd);
                    max = Math.max(max, scores[s - lo]);
                }
                double sum = 0;
                for (int s = 0; s < scores.length; s++) {
                    scores[s] = Math.exp(scores[s] - max);
                    sum += scores[s];
                }
                for (int s = lo; s <= t; s++) {
                    for (int i = 0; i < hd; i++) {
                        out[t][head * hd + i] += scores[s - lo] / sum * v[s][kvHead * hd + i];
                    }
                }
            }
        }
        double[][] o = new double[n][];
        for (int t = 0; t < n; t++) {
            o[t] = matVec(w.values(p + "self_attn.o_proj.weight"), d, c.qDim(), out[t]);
        }
        return o;
    }

    private double[] ffn(String p, double[] x) {
        int d = c.hiddenSize();
        int f = c.intermediateSize();
        double[] g = matVec(w.values(p + "mlp.gate_proj.weight"), f, d, x);
        double[] u = matVec(w.values(p + "mlp.up_proj.weight"), f, d, x);
        double[] a = new double[f];
        for (int i = 0; i < f; i++) {
            a[i] = g[i] / (1 + Math.exp(-g[i])) * u[i];
        }
        return matVec(w.values(p + "mlp.down_proj.weight"), d, f, a);
    }

    private double[] proj(String name, int rows, int cols, double[] x) {
        double[] y = matVec(w.values(name + ".weight"), rows, cols, x);
        if (c.attentionBias()) {
            float[] b = w.values(name + ".bias");
            for (int i = 0; i < rows; i++) {
                y[i] += b[i];
            }
        }
        return y;
    }

    /** HF rotate-half RoPE: pairs (i, i + headDim/2) rotate by pos · θ^(−2i/headDim). */
    private void rope(double[] v, int heads, int pos) {
        int hd = c.headDim();
        int half = hd / 2;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < half; i++) {
                double angle = pos / Math.pow(c.ropeTheta(), 2.0 * i / hd);
                double a = v[h * hd + i];
                double b = v[h * hd + i + half];
                v[h * hd + i] = a * Math.cos(angle) - b * Math.sin(angle);
                v[h * hd + i + half] = b * Math.cos(angle) + a * Math.sin(angle);
            }
        }
    }

    private double[][] rmsNorm(double[][] x, float[] weight) {
        double[][] y = new double[x.length][];
        for (int t = 0; t < x.length; t++) {
            double ss = 0;
            for (double v : x[t]) {
                ss += v * v;
            }
            double scale = 1 / Math.sqrt(ss / x[t].length + c.rmsNormEps());
            y[t] = new double[x[t].length];
            for (int i = 0; i < x[t].length; i++) {
                y[t][i] = x[t][i] * scale * weight[i];
            }
        }
        return y;
    }

    /** y = M·x for a row-major (rows, cols) float matrix, in double precision. */
    static double[] matVec(float[] m, int rows, int cols, double[] x) {
        double[] y = new double[rows];
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int k = 0; k < cols; k++) {
                s += m[r * cols + k] * x[k];
            }
            y[r] = s;
        }
        return y;
    }

    private static double[] row(float[] m, int r, int cols) {
        double[] y = new double[cols];
        for (int k = 0; k < cols; k++) {
            y[k] = m[r * cols + k];
        }
        return y;
    }

    private static void add(double[] acc, double[] v) {
        for (int i = 0; i < acc.length; i++) {
            acc[i] += v[i];
        }
    }
}
