package dev.cmoe.carve;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.IntConsumer;

/**
 * CMoE step 1's inputs: calibration windows drawn from a text, and the FFN input x that they
 * produce at one layer of the (partly carved) model.
 */
final class Calibration {
    /** Windows per forward step while capturing: bounds the activations held at once. */
    static final int BATCH = 4;

    private Calibration() {
    }

    /**
     * {@code samples} windows of {@code seqlen} consecutive tokens at uniformly drawn offsets of
     * the tokenised text, as the reference draws from WikiText-2 (no BOS is inserted).
     */
    static int[][] windows(TextTokenizer tokenizer, Path text, int samples, int seqlen, long seed) {
        if (!Files.isRegularFile(text)) {
            throw new IllegalArgumentException("calibration text " + text + " does not exist");
        }
        String content;
        try {
            content = Files.readString(text, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read calibration text " + text + ": " + e.getMessage(), e);
        }
        int[] tokens = tokenizer.encodeIds(content, false);
        if (tokens.length < seqlen) {
            throw new IllegalArgumentException("calibration text " + text + " has " + tokens.length
                    + " tokens, fewer than one window of " + seqlen);
        }
        Random random = new Random(seed);
        int[][] windows = new int[samples][];
        for (int s = 0; s < samples; s++) {
            int start = random.nextInt(tokens.length - seqlen + 1);
            windows[s] = Arrays.copyOfRange(tokens, start, start + seqlen);
        }
        return windows;
    }

    /**
     * Runs every window through {@code model} and returns the input of layer {@code layer}'s FFN
     * (after the post-attention RMSNorm), window after window: (windows·seqlen, hidden).
     *
     * <p>A capturing wrapper stands in for the layer's FFN during the run: it copies x out and
     * delegates, so the layers before it run as they are (already carved). The whole model runs
     * each time, the layers after {@code layer} included; at L layers that is L full passes over
     * the calibration tokens, cheap next to the clustering and simpler than a partial forward.
     */
    static float[] ffnInput(LlamaModel model, int layer, int[][] windows, IntConsumer progress) {
        Capture capture = new Capture(model.feedForward(layer));
        model.replaceFeedForward(layer, capture);
        try {
            for (int w0 = 0; w0 < windows.length; w0 += BATCH) {
                int n = Math.min(BATCH, windows.length - w0);
                List<KvCache> caches = new ArrayList<>(n);
                try (NDManager out = NDManager.newBaseManager()) {
                    List<SequenceChunk> batch = new ArrayList<>(n);
                    for (int i = 0; i < n; i++) {
                        KvCache cache = model.newCache(windows[w0 + i].length);
                        caches.add(cache);
                        batch.add(new SequenceChunk(cache, windows[w0 + i]));
                    }
                    model.forward(batch, LogitsMode.LAST, out);
                } finally {
                    caches.forEach(KvCache::close);
                }
                progress.accept(w0 + n);
            }
        } finally {
            model.replaceFeedForward(layer, capture.inner);
        }
        int total = capture.rows.stream().mapToInt(r -> r.length).sum();
        float[] x = new float[total];
        int at = 0;
        for (float[] r : capture.rows) {
            System.arraycopy(r, 0, x, at, r.length);
            at += r.length;
        }
        return x;
    }

    /** Records the FFN input of every step, then runs the real FFN on it. */
    private static final class Capture implements FeedForward {
        final FeedForward inner;
        final List<float[]> rows = new ArrayList<>(); // per step (tokens·hidden)

        Capture(FeedForward inner) {
            this.inner = inner;
        }

        @Override
        public NDArray forward(NDArray x) {
            rows.add(x.toFloatArray());
            return inner.forward(x);
        }

        @Override
        public void close() {
            // the wrapped FFN belongs to the model; it is put back, not closed
        }
    }
}
