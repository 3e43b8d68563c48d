package dev.cmoe.model.eval;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.IntConsumer;

/**
 * Perplexity as the CMoE and GPTQ papers evaluate it: the token stream is cut into
 * non-overlapping windows of {@code seqlen} tokens (the tail shorter than a window is dropped),
 * each window is scored from an empty context, and every token but the first of a window is
 * predicted from the ones before it. PPL = exp(mean negative log-likelihood) over those tokens.
 */
public final class Perplexity {
    /** The score of a text. {@code tokens} counts the predicted tokens, windows × (seqlen − 1). */
    public record Result(double perplexity, double meanNll, long tokens, int windows, int seqlen, double seconds) {
    }

    private Perplexity() {
    }

    /**
     * Scores {@code tokens}, {@code batch} windows per forward step; {@code progress} receives the
     * number of windows done so far.
     */
    public static Result evaluate(LlamaModel model, int[] tokens, int seqlen, int batch, IntConsumer progress) {
        if (seqlen < 2) {
            throw new IllegalArgumentException("seqlen must be at least 2, got " + seqlen);
        }
        if (seqlen > model.config().contextLength()) {
            throw new IllegalArgumentException("seqlen " + seqlen + " exceeds the model's context of "
                    + model.config().contextLength());
        }
        int windows = tokens.length / seqlen;
        if (windows == 0) {
            throw new IllegalArgumentException("text has " + tokens.length + " tokens, fewer than one window of "
                    + seqlen);
        }
        long start = System.nanoTime();
        double nll = 0;
        for (int w0 = 0; w0 < windows; w0 += batch) {
            int n = Math.min(batch, windows - w0);
            nll += windowsNll(model, tokens, seqlen, w0, n);
            progress.accept(w0 + n);
        }
        long predicted = (long) windows * (seqlen - 1);
        double mean = nll / predicted;
        return new Result(Math.exp(mean), mean, predicted, windows, seqlen, (System.nanoTime() - start) / 1e9);
    }

    /** Summed negative log-likelihood of windows [first, first + n). */
    private static double windowsNll(LlamaModel model, int[] tokens, int seqlen, int first, int n) {
        List<KvCache> caches = new ArrayList<>(n);
        try (NDManager m = NDManager.newBaseManager()) {
            List<SequenceChunk> chunks = new ArrayList<>(n);
            long[] targets = new long[n * (seqlen - 1)];
            long[] rows = new long[n * (seqlen - 1)];
            for (int i = 0; i < n; i++) {
                int from = (first + i) * seqlen;
                KvCache cache = model.newCache(seqlen);
                caches.add(cache);
                chunks.add(new SequenceChunk(cache, Arrays.copyOfRange(tokens, from, from + seqlen)));
                for (int t = 0; t < seqlen - 1; t++) {
                    targets[i * (seqlen - 1) + t] = tokens[from + t + 1];
                    rows[i * (seqlen - 1) + t] = (long) i * seqlen + t;
                }
            }
            NDArray logits = model.forward(chunks, LogitsMode.ALL, m); // (n * seqlen, vocab)
            NDArray logp = logits.get(new NDIndex("{}", m.create(rows))).logSoftmax(-1);
            NDArray picked = logp.gather(m.create(targets).reshape(-1, 1), 1);
            return -picked.sum().toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble();
        } finally {
            caches.forEach(KvCache::close);
        }
    }
}
