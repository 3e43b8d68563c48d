package dev.cmoe.model.testing;

import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeWeightNames;
import java.util.Arrays;
import java.util.Map;
import java.util.Random;
import java.util.function.Function;

/**
 * The slow twin of {@code MoeFeedForward}: the carved FFN formula in plain Java double
 * precision, one token at a time, read from the same named tensors. Tests only.
 */
public final class ReferenceMoe {
    private final MoeConfig moe;
    private final int hidden;
    private final int layer;
    private final Function<String, float[]> tensors;

    /** @param tensors name → row-major values of layer {@code layer}'s MoE tensors */
    public ReferenceMoe(MoeConfig moe, int hidden, int layer, Function<String, float[]> tensors) {
        this.moe = moe;
        this.hidden = hidden;
        this.layer = layer;
        this.tensors = tensors;
    }

    /** Router probabilities s' of one token: (N_r). */
    public double[] probs(double[] x) {
        int nr = moe.routed();
        double[] c = ReferenceLlama.matVec(tensors.apply(MoeWeightNames.routerClassifier(layer)), nr, hidden, x);
        double[] g = ReferenceLlama.matVec(tensors.apply(MoeWeightNames.routerGate(layer)), nr, hidden, x);
        double[] s = new double[nr];
        double max = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < nr; j++) {
            s[j] = Math.abs(c[j] * silu(g[j]));
            max = Math.max(max, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < nr; j++) {
            s[j] = Math.exp(s[j] - max);
            sum += s[j];
        }
        for (int j = 0; j < nr; j++) {
            s[j] /= sum;
        }
        return s;
    }

    /** The selected experts of one token, best first, by s' + b. */
    public int[] select(double[] probs) {
        float[] b = tensors.apply(MoeWeightNames.routerBias(layer));
        Integer[] order = new Integer[probs.length];
        Arrays.setAll(order, j -> j);
        Arrays.sort(order, (p, q) -> Double.compare(probs[q] + b[q], probs[p] + b[p]));
        int[] out = new int[moe.active()];
        for (int k = 0; k < out.length; k++) {
            out[k] = order[k];
        }
        return out;
    }

    /** Gap between the last selected and the first unselected key: how safe the choice is from rounding. */
    public double margin(double[] probs) {
        float[] b = tensors.apply(MoeWeightNames.routerBias(layer));
        double[] keys = new double[probs.length];
        for (int j = 0; j < keys.length; j++) {
            keys[j] = probs[j] + b[j];
        }
        Arrays.sort(keys);
        return moe.active() == keys.length ? Double.POSITIVE_INFINITY
                : keys[keys.length - moe.active()] - keys[keys.length - moe.active() - 1];
    }

    /** The layer's output for one token: (hidden). */
    public double[] forward(double[] x) {
        double[] out = new double[hidden];
        if (moe.shared() > 0) {
            add(out, swiglu(x, MoeWeightNames.shared(layer, MoeWeightNames.GATE),
                    MoeWeightNames.shared(layer, MoeWeightNames.UP),
                    MoeWeightNames.shared(layer, MoeWeightNames.DOWN), moe.sharedSize()), 1);
        }
        double[] p = probs(x);
        float[] u = tensors.apply(MoeWeightNames.routerScale(layer));
        for (int j : select(p)) {
            double g = 1 + p[j] * u[j];
            add(out, swiglu(x, MoeWeightNames.expert(layer, j, MoeWeightNames.GATE),
                    MoeWeightNames.expert(layer, j, MoeWeightNames.UP),
                    MoeWeightNames.expert(layer, j, MoeWeightNames.DOWN), moe.expertSize()), g);
        }
        return out;
    }

    private double[] swiglu(double[] x, String gate, String up, String down, int inter) {
        double[] g = ReferenceLlama.matVec(tensors.apply(gate), inter, hidden, x);
        double[] u = ReferenceLlama.matVec(tensors.apply(up), inter, hidden, x);
        double[] a = new double[inter];
        for (int i = 0; i < inter; i++) {
            a[i] = silu(g[i]) * u[i];
        }
        return ReferenceLlama.matVec(tensors.apply(down), hidden, inter, a);
    }

    /**
     * Random MoE tensors for layer {@code layer} of width {@code hidden}, put into {@code out}:
     * experts and router rows Gaussian, u and b small and non-zero so both paths are exercised.
     */
    public static void randomLayer(Map<String, RandomModel.Tensor> out, MoeConfig moe, int hidden, int layer,
                                   long seed) {
        Random r = new Random(seed);
        int m = moe.expertSize();
        int nr = moe.routed();
        double std = 1 / Math.sqrt(hidden);
        if (moe.shared() > 0) {
            int s = moe.sharedSize();
            put(out, MoeWeightNames.shared(layer, MoeWeightNames.GATE), r, std, s, hidden);
            put(out, MoeWeightNames.shared(layer, MoeWeightNames.UP), r, std, s, hidden);
            put(out, MoeWeightNames.shared(layer, MoeWeightNames.DOWN), r, 1 / Math.sqrt(s), hidden, s);
        }
        for (int j = 0; j < nr; j++) {
            put(out, MoeWeightNames.expert(layer, j, MoeWeightNames.GATE), r, std, m, hidden);
            put(out, MoeWeightNames.expert(layer, j, MoeWeightNames.UP), r, std, m, hidden);
            put(out, MoeWeightNames.expert(layer, j, MoeWeightNames.DOWN), r, 1 / Math.sqrt(m), hidden, m);
        }
        put(out, MoeWeightNames.routerClassifier(layer), r, 3 * std, nr, hidden);
        put(out, MoeWeightNames.routerGate(layer), r, 3 * std, nr, hidden);
        put(out, MoeWeightNames.routerScale(layer), r, 0.5, nr);
        put(out, MoeWeightNames.routerBias(layer), r, 0.01, nr);
    }

    private static void put(Map<String, RandomModel.Tensor> out, String name, Random r, double std, long... shape) {
        float[] v = new float[Math.toIntExact(Arrays.stream(shape).reduce(1, (a, b) -> a * b))];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (r.nextGaussian() * std);
        }
        out.put(name, new RandomModel.Tensor(shape, v));
    }

    private static double silu(double v) {
        return v / (1 + Math.exp(-v));
    }

    private static void add(double[] acc, double[] v, double w) {
        for (int i = 0; i < acc.length; i++) {
            acc[i] += w * v[i];
        }
    }
}
