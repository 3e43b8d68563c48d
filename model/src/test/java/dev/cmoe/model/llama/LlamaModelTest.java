package dev.cmoe.model.llama;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.ReferenceLlama;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.Test;

class LlamaModelTest {

    static Stream<ModelConfig> configs() {
        return Stream.of(RandomModel.llamaConfig(), RandomModel.qwen2Config(), RandomModel.mistralConfig(5));
    }

    static int[] tokens(int n, int vocab, long seed) {
        Random r = new Random(seed);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = r.nextInt(vocab);
        }
        return t;
    }

    /** max |a − b| / max |b| over the whole matrix. */
    static double relativeError(float[] actual, double[][] expected) {
        double maxDiff = 0;
        double maxRef = 0;
        int cols = expected[0].length;
        for (int r = 0; r < expected.length; r++) {
            for (int c = 0; c < cols; c++) {
                maxDiff = Math.max(maxDiff, Math.abs(actual[r * cols + c] - expected[r][c]));
                maxRef = Math.max(maxRef, Math.abs(expected[r][c]));
            }
        }
        return maxDiff / maxRef;
    }

    @ParameterizedTest
    @MethodSource("configs")
    void prefillMatchesDoublePrecisionReference(ModelConfig config) {
        RandomModel weights = RandomModel.of(config, 7);
        int[] prompt = tokens(13, config.vocabSize(), 1);
        double[][] expected = new ReferenceLlama(weights).logits(prompt);
        try (LlamaModel model = LlamaModel.dense(config, weights);
             NDManager m = NDManager.newBaseManager();
             KvCache cache = model.newCache(32)) {
            NDArray logits = model.forward(List.of(new SequenceChunk(cache, prompt)), LogitsMode.ALL, m);
            assertEquals(prompt.length, logits.getShape().get(0));
            assertEquals(config.vocabSize(), logits.getShape().get(1));
            double err = relativeError(logits.toFloatArray(), expected);
            assertTrue(err < 1e-4, config.modelType() + " relative error " + err);
            assertEquals(prompt.length, cache.length());
        }
    }

    @ParameterizedTest
    @MethodSource("configs")
    void cachedDecodeEqualsFullRecomputation(ModelConfig config) {
        RandomModel weights = RandomModel.of(config, 11);
        int[] seq = tokens(12, config.vocabSize(), 2);
        double[][] expected = new ReferenceLlama(weights).logits(seq);
        try (LlamaModel model = LlamaModel.dense(config, weights);
             NDManager m = NDManager.newBaseManager();
             KvCache cache = model.newCache(seq.length)) {
            // a 4-token prefill, then one token per step through the cache
            int prefill = 4;
            float[] got = new float[seq.length * config.vocabSize()];
            float[] first = model.forward(List.of(new SequenceChunk(cache, java.util.Arrays.copyOf(seq, prefill))),
                    LogitsMode.ALL, m).toFloatArray();
            System.arraycopy(first, 0, got, 0, first.length);
            for (int t = prefill; t < seq.length; t++) {
                float[] step = model.forward(List.of(new SequenceChunk(cache, new int[] {seq[t]})),
                        LogitsMode.LAST, m).toFloatArray();
                System.arraycopy(step, 0, got, t * config.vocabSize(), step.length);
            }
            double err = relativeError(got, expected);
            assertTrue(err < 1e-4, config.modelType() + " cached decode relative error " + err);
        }
    }

    @ParameterizedTest
    @MethodSource("configs")
    void batchOfDifferentLengthsEqualsEachAlone(ModelConfig config) {
        RandomModel weights = RandomModel.of(config, 3);
        int vocab = config.vocabSize();
        int[][] prompts = {tokens(9, vocab, 10), tokens(1, vocab, 11), tokens(5, vocab, 12), tokens(14, vocab, 13)};
        int[][] next = {tokens(3, vocab, 20), tokens(3, vocab, 21), tokens(3, vocab, 22), tokens(3, vocab, 23)};
        try (LlamaModel model = LlamaModel.dense(config, weights); NDManager m = NDManager.newBaseManager()) {
            // alone: each sequence prefilled, then decoded, by itself
            float[][][] alone = new float[prompts.length][][];
            for (int s = 0; s < prompts.length; s++) {
                try (KvCache cache = model.newCache(64)) {
                    alone[s] = new float[1 + next[s].length][];
                    alone[s][0] = model.forward(List.of(new SequenceChunk(cache, prompts[s])), LogitsMode.LAST, m)
                            .toFloatArray();
                    for (int t = 0; t < next[s].length; t++) {
                        alone[s][t + 1] = model.forward(List.of(new SequenceChunk(cache, new int[] {next[s][t]})),
                                LogitsMode.LAST, m).toFloatArray();
                    }
                }
            }
            // together: sequences join at different steps, prefill chunks mixed with decode tokens
            List<KvCache> caches = new ArrayList<>();
            for (int s = 0; s < prompts.length; s++) {
                caches.add(model.newCache(64));
            }
            try {
                int[] progress = new int[prompts.length]; // 0 = not started, k = k steps done
                for (int step = 0; step < prompts.length + next[0].length; step++) {
                    List<SequenceChunk> batch = new ArrayList<>();
                    List<Integer> who = new ArrayList<>();
                    for (int s = 0; s < prompts.length && s <= step; s++) {
                        if (progress[s] > next[s].length) {
                            continue;
                        }
                        int[] toks = progress[s] == 0 ? prompts[s] : new int[] {next[s][progress[s] - 1]};
                        batch.add(new SequenceChunk(caches.get(s), toks));
                        who.add(s);
                    }
                    float[] logits = model.forward(batch, LogitsMode.LAST, m).toFloatArray();
                    for (int b = 0; b < who.size(); b++) {
                        int s = who.get(b);
                        float[] row = java.util.Arrays.copyOfRange(logits, b * vocab, (b + 1) * vocab);
                        assertArrayEquals(alone[s][progress[s]], row, 2e-4f,
                                "sequence " + s + " step " + progress[s]);
                        progress[s]++;
                    }
                }
            } finally {
                caches.forEach(KvCache::close);
            }
        }
    }

    @Test
    void rejectsTokensOutsideVocabularyWithoutAdvancingTheCache() {
        ModelConfig config = RandomModel.llamaConfig();
        try (LlamaModel model = LlamaModel.dense(config, RandomModel.of(config, 1));
             NDManager m = NDManager.newBaseManager();
             KvCache cache = model.newCache(16)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> model.forward(List.of(new SequenceChunk(cache, new int[] {3, config.vocabSize()})),
                            LogitsMode.LAST, m));
            assertTrue(e.getMessage().contains("token id " + config.vocabSize()), e.getMessage());
            assertEquals(0, cache.length());
        }
    }

    @Test
    void cacheRefusesToGrowPastItsLimit() {
        ModelConfig config = RandomModel.llamaConfig();
        try (LlamaModel model = LlamaModel.dense(config, RandomModel.of(config, 1));
             NDManager m = NDManager.newBaseManager();
             KvCache cache = model.newCache(4)) {
            model.forward(List.of(new SequenceChunk(cache, new int[] {1, 2, 3})), LogitsMode.LAST, m);
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> model.forward(List.of(new SequenceChunk(cache, new int[] {4, 5})), LogitsMode.LAST, m));
            assertTrue(e.getMessage().contains("exceeds its KV cache limit of 4"), e.getMessage());
            assertEquals(3, cache.length());
        }
    }
}
