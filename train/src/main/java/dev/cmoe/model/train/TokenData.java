package dev.cmoe.model.train;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * A tokenised split as one stream (documents joined as BOS doc EOS) from which training draws
 * fixed-length windows. Window choice depends only on (seed, step), so a resumed run sees
 * exactly the batches an uninterrupted one would.
 */
public final class TokenData {
    private final int[] tokens;

    public TokenData(int[] tokens) {
        this.tokens = tokens;
    }

    /** Joins tokenised documents as {@code BOS doc EOS BOS doc EOS …}. */
    public static TokenData ofDocuments(Iterable<int[]> documents, int bos, int eos) {
        int total = 0;
        for (int[] d : documents) {
            total += d.length + 2;
        }
        int[] all = new int[total];
        int at = 0;
        for (int[] d : documents) {
            all[at++] = bos;
            System.arraycopy(d, 0, all, at, d.length);
            at += d.length;
            all[at++] = eos;
        }
        return new TokenData(all);
    }

    public int size() {
        return tokens.length;
    }

    /**
     * The inputs and next-token targets of step {@code step}: {@code batch} windows of
     * {@code seqLen} at random offsets drawn from (seed, step).
     *
     * @return {inputs, targets}, each batch × seqLen row-major
     */
    public long[][] batch(long seed, long step, int batch, int seqLen) {
        SplittableRandom r = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + step);
        int[] starts = new int[batch];
        for (int b = 0; b < batch; b++) {
            starts[b] = r.nextInt(tokens.length - seqLen);
        }
        return windows(starts, seqLen);
    }

    /** {@code count} evenly spaced windows, the same every time: a stable validation set. */
    public long[][] evenWindows(int count, int seqLen) {
        int span = tokens.length - seqLen - 1;
        int[] starts = new int[count];
        for (int i = 0; i < count; i++) {
            starts[i] = (int) ((long) span * i / Math.max(1, count));
        }
        return windows(starts, seqLen);
    }

    /**
     * {@code count} window starts for windows of {@code seqLen} (plus the next-token target) at
     * uniformly random offsets drawn from {@code seed}: a fixed sample of training windows, as
     * GPTQ-style calibration and CMoE's adaptation draw them.
     */
    public int[] randomStarts(long seed, int count, int seqLen) {
        if (tokens.length <= seqLen + 1) {
            throw new IllegalArgumentException("token stream of " + tokens.length + " is too short for windows of "
                    + seqLen);
        }
        SplittableRandom r = new SplittableRandom(seed);
        int[] starts = new int[count];
        for (int i = 0; i < count; i++) {
            starts[i] = r.nextInt(tokens.length - seqLen);
        }
        return starts;
    }

    /**
     * The windows starting at {@code starts}.
     *
     * @return {inputs, targets}, each starts.length × seqLen row-major
     */
    public long[][] windows(int[] starts, int seqLen) {
        if (tokens.length <= seqLen + 1) {
            throw new IllegalArgumentException("token stream of " + tokens.length + " is too short for windows of "
                    + seqLen);
        }
        long[] in = new long[starts.length * seqLen];
        long[] out = new long[starts.length * seqLen];
        for (int b = 0; b < starts.length; b++) {
            for (int t = 0; t < seqLen; t++) {
                in[b * seqLen + t] = tokens[starts[b] + t];
                out[b * seqLen + t] = tokens[starts[b] + t + 1];
            }
        }
        return new long[][] {in, out};
    }

    /** A copy of the stream, e.g. for baselines. */
    public int[] tokens() {
        return Arrays.copyOf(tokens, tokens.length);
    }
}
