package dev.cmoe.model.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.ReferenceLlama;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class PerplexityTest {

    @Test
    void matchesReferenceNllOverNonOverlappingWindows() {
        ModelConfig config = RandomModel.qwen2Config();
        RandomModel weights = RandomModel.of(config, 4);
        Random r = new Random(8);
        int seqlen = 10;
        int[] tokens = r.ints(3 * seqlen + 7, 0, config.vocabSize()).toArray(); // 3 windows and a dropped tail
        ReferenceLlama ref = new ReferenceLlama(weights);
        double nll = 0;
        for (int w = 0; w < 3; w++) {
            int[] window = Arrays.copyOfRange(tokens, w * seqlen, (w + 1) * seqlen);
            double[][] logits = ref.logits(window);
            for (int t = 0; t < seqlen - 1; t++) {
                double max = Arrays.stream(logits[t]).max().orElseThrow();
                double lse = max + Math.log(Arrays.stream(logits[t]).map(v -> Math.exp(v - max)).sum());
                nll += lse - logits[t][window[t + 1]];
            }
        }
        double expected = Math.exp(nll / (3 * (seqlen - 1)));
        List<Integer> progress = new ArrayList<>();
        try (LlamaModel model = LlamaModel.dense(config, weights)) {
            Perplexity.Result res = Perplexity.evaluate(model, tokens, seqlen, 2, progress::add);
            assertEquals(3, res.windows());
            assertEquals(27, res.tokens());
            assertEquals(expected, res.perplexity(), expected * 1e-4);
            assertEquals(List.of(2, 3), progress);
            // batching windows does not change the score
            assertEquals(res.perplexity(), Perplexity.evaluate(model, tokens, seqlen, 1, i -> { }).perplexity(),
                    res.perplexity() * 1e-5);
        }
    }

    @Test
    void rejectsTextShorterThanOneWindow() {
        ModelConfig config = RandomModel.llamaConfig();
        try (LlamaModel model = LlamaModel.dense(config, RandomModel.of(config, 1))) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Perplexity.evaluate(model, new int[] {1, 2, 3}, 8, 1, i -> { }));
            assertTrue(e.getMessage().contains("fewer than one window of 8"), e.getMessage());
        }
    }
}
