package dev.cmoe.model.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

class NgramBaselineTest {

    @Test
    void uniformTokensHaveUnigramPerplexityNearTheVocabulary() {
        Random r = new Random(1);
        int[] train = r.ints(200_000, 0, 50).toArray();
        int[] test = r.ints(10_000, 0, 50).toArray();
        NgramBaseline b = new NgramBaseline(train, 50);
        assertEquals(50, b.unigramPerplexity(test, 100), 1.0);
    }

    @Test
    void bigramCapturesADeterministicSuccessor() {
        // token t is always followed by (t + 1) % 20: a bigram model is nearly certain, a unigram is not
        int[] train = new int[20_000];
        for (int i = 0; i < train.length; i++) {
            train[i] = i % 20;
        }
        int[] test = new int[2_000];
        for (int i = 0; i < test.length; i++) {
            test[i] = (i + 7) % 20;
        }
        NgramBaseline b = new NgramBaseline(train, 20);
        double lambda = b.tune(test, 50);
        assertTrue(lambda >= 0.9, "λ should trust the bigram: " + lambda);
        assertTrue(b.bigramPerplexity(test, 50) < 1.2, "bigram ppl " + b.bigramPerplexity(test, 50));
        assertEquals(20, b.unigramPerplexity(test, 50), 0.5);
    }
}
