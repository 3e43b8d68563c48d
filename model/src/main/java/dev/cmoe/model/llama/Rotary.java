package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.arch.RopeScaling;
import dev.cmoe.model.config.ModelConfig;
import java.util.ArrayList;
import java.util.List;

/**
 * cos and sin of rotary position embedding for the tokens of a step, with the checkpoint's
 * {@link RopeScaling}. Angles are computed in double precision. The table covers the positions
 * used so far and grows by doubling, since real contexts (128k, 1M positions) would make a full
 * table larger than a small model. Dynamic NTK scaling depends on each sequence's length, so a
 * sequence past the trained context gets rows of its own.
 */
public final class Rotary implements AutoCloseable {
    private static final int INITIAL_POSITIONS = 2048;

    private final ModelConfig config;
    private final NDManager manager;
    private final double[] invFreq;      // (headDim/2) for sequences within the trained context
    private final float attentionFactor; // YaRN's factor on cos and sin, else 1
    private final List<NDArray> retired = new ArrayList<>(); // old tables a running step may still read
    private volatile NDArray[] table;    // {cos, sin}, each (positions, headDim/2)

    public Rotary(ModelConfig config, NDManager manager) {
        this.config = config;
        this.manager = manager;
        RopeScaling s = config.ropeScaling();
        this.invFreq = s.inverseFrequencies(config.headDim(), config.ropeTheta(), config.maxPositionEmbeddings(),
                config.maxPositionEmbeddings());
        this.attentionFactor = (float) s.attentionFactor();
        this.table = build(Math.min(config.contextLength(), INITIAL_POSITIONS));
    }

    /**
     * cos and sin of each row of a step, as (rows, 1, headDim/2) to broadcast over heads.
     *
     * @param positions the position of each row
     * @param seqLens for each row, the length of its sequence after this step (dynamic NTK reads it)
     */
    public NDArray[] rows(NDManager step, long[] positions, int[] seqLens) {
        int maxPos = config.maxPositionEmbeddings();
        boolean dynamicBeyond = false;
        long highest = 0;
        for (int i = 0; i < positions.length; i++) {
            highest = Math.max(highest, positions[i]);
            dynamicBeyond |= config.ropeScaling().type() == RopeScaling.Type.DYNAMIC && seqLens[i] > maxPos;
        }
        if (highest >= config.contextLength()) {
            throw new IllegalArgumentException("position " + highest + " is beyond the model's context of "
                    + config.contextLength());
        }
        if (dynamicBeyond) {
            return direct(step, positions, seqLens);
        }
        NDArray[] t = tableFor(highest + 1);
        NDArray pos = step.create(positions);
        return new NDArray[] {t[0].get(new NDIndex("{}", pos)).expandDims(1), t[1].get(new NDIndex("{}", pos)).expandDims(1)};
    }

    private NDArray[] tableFor(long positions) {
        NDArray[] t = table;
        if (t[0].getShape().get(0) >= positions) {
            return t;
        }
        synchronized (this) {
            t = table;
            long size = t[0].getShape().get(0);
            if (size < positions) {
                long grown = Math.max(positions, Math.min((long) config.contextLength(), size * 2));
                retired.add(t[0]);
                retired.add(t[1]);
                t = build((int) grown);
                table = t;
            }
            return t;
        }
    }

    private NDArray[] build(int positions) {
        int half = invFreq.length;
        float[] cos = new float[positions * half];
        float[] sin = new float[positions * half];
        for (int p = 0; p < positions; p++) {
            fill(cos, sin, p * half, p, invFreq);
        }
        Shape s = new Shape(positions, half);
        return new NDArray[] {manager.create(cos, s), manager.create(sin, s)};
    }

    /** Rows computed one by one: only for sequences past the trained context under dynamic NTK. */
    private NDArray[] direct(NDManager step, long[] positions, int[] seqLens) {
        int half = invFreq.length;
        float[] cos = new float[positions.length * half];
        float[] sin = new float[positions.length * half];
        java.util.Map<Integer, double[]> bySeqLen = new java.util.HashMap<>(); // rows of a chunk share one
        for (int i = 0; i < positions.length; i++) {
            double[] inv = seqLens[i] > config.maxPositionEmbeddings()
                    ? bySeqLen.computeIfAbsent(seqLens[i], n -> config.ropeScaling().inverseFrequencies(
                            config.headDim(), config.ropeTheta(), config.maxPositionEmbeddings(), n))
                    : invFreq;
            fill(cos, sin, i * half, positions[i], inv);
        }
        Shape s = new Shape(positions.length, 1, half);
        return new NDArray[] {step.create(cos, s), step.create(sin, s)};
    }

    private void fill(float[] cos, float[] sin, int offset, long position, double[] inv) {
        for (int i = 0; i < inv.length; i++) {
            double angle = position * inv[i];
            cos[offset + i] = (float) Math.cos(angle) * attentionFactor;
            sin[offset + i] = (float) Math.sin(angle) * attentionFactor;
        }
    }

    @Override
    public synchronized void close() {
        table[0].close();
        table[1].close();
        retired.forEach(NDArray::close);
        retired.clear();
    }
}
