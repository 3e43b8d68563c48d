package dev.cmoe.carve;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.io.IOException;
import java.nio.FloatBuffer;
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
    /**
     * Tokens per forward step while capturing (whole windows, at least one): a layer's
     * activations for a step are a few times tokens × intermediate size, so this bounds the
     * carve's peak memory on wide models, where the matmuls are already efficient at this height.
     */
    static final int TOKENS_PER_STEP = 1024;

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
        return windows(tokens, samples, seqlen, seed);
    }

    /** As {@link #windows(TextTokenizer, Path, int, int, long)}, from an already tokenised text. */
    static int[][] windows(int[] tokens, int samples, int seqlen, long seed) {
        if (tokens.length < seqlen) {
            throw new IllegalArgumentException("the calibration text has " + tokens.length
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
     * The calibration windows' residual stream at the layer being carved. Carving reads a layer's
     * FFN input from it, carves the layer, then advances the stream through the carved layer, so
     * each layer's calibration sees the layers before it as carved. That costs two layer passes
     * per layer, where re-running the model from the start would cost a model pass per layer.
     */
    static final class ResidualStream {
        private final LlamaModel model;
        private final int windows;
        private final int seqlen;
        private final int hidden;
        private float[] residual; // (windows·seqlen, hidden), entering layer `layer`
        private int layer;

        ResidualStream(LlamaModel model, int[][] windows) {
            this.model = model;
            this.windows = windows.length;
            this.seqlen = windows[0].length;
            this.hidden = model.config().hiddenSize();
            try (NDManager m = NDManager.newBaseManager()) {
                residual = model.embedWindows(windows, m).toFloatArray();
            }
        }

        /** The stream entering the current layer, (windows·seqlen, hidden): rows in the order of {@link #ffnInput}'s. */
        float[] residual() {
            return residual;
        }

        /** The layer whose input the stream holds. */
        int layer() {
            return layer;
        }

        /**
         * The input of the current layer's FFN (after the post-attention RMSNorm),
         * (windows·seqlen, hidden): a capturing wrapper stands in for the FFN during one pass.
         */
        float[] ffnInput(IntConsumer progress) {
            Capture capture = new Capture(model.feedForward(layer));
            model.replaceFeedForward(layer, capture);
            try {
                pass(progress, false);
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

        /** Moves the stream past the current layer, through the FFN the layer holds now. */
        void advance(IntConsumer progress) {
            residual = pass(progress, true);
            layer++;
        }

        private float[] pass(IntConsumer progress, boolean keep) {
            float[] next = keep ? new float[residual.length] : null;
            int rowFloats = seqlen * hidden;
            int perStep = Math.max(1, TOKENS_PER_STEP / seqlen);
            for (int w0 = 0; w0 < windows; w0 += perStep) {
                int n = Math.min(perStep, windows - w0);
                try (NDManager m = NDManager.newBaseManager()) {
                    NDArray x = Tensors.create(m, FloatBuffer.wrap(residual, w0 * rowFloats, n * rowFloats),
                            (long) n * seqlen, hidden);
                    NDArray y = model.forwardLayer(layer, x, n, seqlen, m);
                    if (keep) {
                        System.arraycopy(y.toFloatArray(), 0, next, w0 * rowFloats, n * rowFloats);
                    }
                }
                progress.accept(w0 + n);
            }
            return next;
        }
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
