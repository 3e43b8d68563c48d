package dev.cmoe.model.eval;

import java.util.HashMap;
import java.util.Map;

/**
 * Unigram and bigram perplexities on the same token windows the model is scored on, to give a
 * model's perplexity a scale. The unigram uses add-one smoothing; the bigram interpolates its
 * maximum-likelihood estimate with the unigram, λ chosen on held-out tokens (Jelinek–Mercer).
 */
public final class NgramBaseline {
    private final int vocab;
    private final long[] unigram;                 // token -> count in the training stream
    private final long total;
    private final Map<Long, Integer> bigram = new HashMap<>(); // (prev << 32 | next) -> count
    private final long[] prevCount;               // token -> times it precedes another token
    private double lambda = 0.5;

    /** Counts unigrams and bigrams of {@code train}. */
    public NgramBaseline(int[] train, int vocab) {
        this.vocab = vocab;
        this.unigram = new long[vocab];
        this.prevCount = new long[vocab];
        for (int i = 0; i < train.length; i++) {
            unigram[train[i]]++;
            if (i > 0) {
                bigram.merge(key(train[i - 1], train[i]), 1, Integer::sum);
                prevCount[train[i - 1]]++;
            }
        }
        this.total = train.length;
    }

    private static long key(int prev, int next) {
        return ((long) prev << 32) | next;
    }

    double unigramProb(int t) {
        return (unigram[t] + 1.0) / (total + vocab);
    }

    double bigramProb(int prev, int t) {
        double ml = prevCount[prev] == 0 ? 0 : bigram.getOrDefault(key(prev, t), 0) / (double) prevCount[prev];
        return lambda * ml + (1 - lambda) * unigramProb(t);
    }

    /** Picks the interpolation weight λ ∈ {0.05, 0.10, …, 0.95} that minimises perplexity on {@code heldOut}. */
    public double tune(int[] heldOut, int seqlen) {
        double best = Double.POSITIVE_INFINITY;
        double bestLambda = 0.5;
        for (int i = 1; i < 20; i++) {
            lambda = i * 0.05;
            double ppl = bigramPerplexity(heldOut, seqlen);
            if (ppl < best) {
                best = ppl;
                bestLambda = lambda;
            }
        }
        lambda = bestLambda;
        return lambda;
    }

    /** Unigram perplexity over the tokens {@link Perplexity} predicts: windows of seqlen, first of each skipped. */
    public double unigramPerplexity(int[] text, int seqlen) {
        double nll = 0;
        long n = 0;
        for (int w = 0; w + seqlen <= text.length; w += seqlen) {
            for (int t = w + 1; t < w + seqlen; t++, n++) {
                nll -= Math.log(unigramProb(text[t]));
            }
        }
        return Math.exp(nll / n);
    }

    /** Bigram perplexity over the same tokens; each window's first token gives no context to the next. */
    public double bigramPerplexity(int[] text, int seqlen) {
        double nll = 0;
        long n = 0;
        for (int w = 0; w + seqlen <= text.length; w += seqlen) {
            for (int t = w + 1; t < w + seqlen; t++, n++) {
                nll -= Math.log(bigramProb(text[t - 1], text[t]));
            }
        }
        return Math.exp(nll / n);
    }

    public double lambda() {
        return lambda;
    }
}
