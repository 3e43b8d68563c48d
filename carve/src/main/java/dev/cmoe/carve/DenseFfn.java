package dev.cmoe.carve;

import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeWeightNames;
import java.nio.FloatBuffer;

/**
 * One layer's dense SwiGLU weights in Java arrays, Hugging Face layout: carving reads rows of
 * W_gate, W_up and columns of W_down by neuron index, and never changes a value.
 */
record DenseFfn(int hidden, int inter,
                float[] gate,   // (inter, hidden)
                float[] up,     // (inter, hidden)
                float[] down) { // (hidden, inter)

    static DenseFfn read(TensorSource source, int layer, int hidden, int inter) {
        return new DenseFfn(hidden, inter,
                floats(source.read(MoeWeightNames.dense(layer, MoeWeightNames.GATE), inter, hidden)),
                floats(source.read(MoeWeightNames.dense(layer, MoeWeightNames.UP), inter, hidden)),
                floats(source.read(MoeWeightNames.dense(layer, MoeWeightNames.DOWN), hidden, inter)));
    }

    private static float[] floats(FloatBuffer b) {
        if (b.hasArray() && b.arrayOffset() == 0 && b.position() == 0 && b.remaining() == b.array().length) {
            return b.array(); // a buffer made for this read alone: a second copy would only double the peak
        }
        float[] v = new float[b.remaining()];
        b.duplicate().get(v);
        return v;
    }

    /** Rows {@code neurons} of W (inter, hidden) stacked: (neurons, hidden). */
    static float[] rows(float[] w, int hidden, int[] neurons) {
        float[] out = new float[neurons.length * hidden];
        for (int r = 0; r < neurons.length; r++) {
            System.arraycopy(w, neurons[r] * hidden, out, r * hidden, hidden);
        }
        return out;
    }

    /** Columns {@code neurons} of W_down (hidden, inter): (hidden, neurons). */
    float[] downColumns(int[] neurons) {
        float[] out = new float[hidden * neurons.length];
        for (int i = 0; i < hidden; i++) {
            for (int c = 0; c < neurons.length; c++) {
                out[i * neurons.length + c] = down[i * inter + neurons[c]];
            }
        }
        return out;
    }

    /** Row {@code neuron} of W (inter, hidden), L2-normalised (a zero row stays zero). */
    static float[] unitRow(float[] w, int hidden, int neuron) {
        double ss = 0;
        for (int k = 0; k < hidden; k++) {
            double v = w[neuron * hidden + k];
            ss += v * v;
        }
        double inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
        float[] out = new float[hidden];
        for (int k = 0; k < hidden; k++) {
            out[k] = (float) (w[neuron * hidden + k] * inv);
        }
        return out;
    }
}
