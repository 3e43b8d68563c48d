package dev.cmoe.model.arch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.testing.HfFixtures;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every golden fixture case loads from its real Hugging Face layout (bf16, f16, sharded) and
 * matches the reference forward: logits within 1e-4 of their largest magnitude, loss within 1e-4,
 * and greedy ids exactly, decoded with the KV cache (prefill, then one token per step).
 */
class HfArchsTest {

    static Stream<Path> cases() {
        return HfFixtures.cases().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void fullForwardMatchesTheReference(Path dir) throws Exception {
        HfFixtures.Reference ref = HfFixtures.reference(dir);
        try (ModelDir model = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            String text = Files.readString(dir.resolve("text.txt"), StandardCharsets.UTF_8);
            int[] ids = model.tokenizer().encodeIds(text, false);
            assertArrayEquals(ref.inputIds(), ids, "tokenization of text.txt");
            LlamaModel lm = model.model();
            double[][] logits;
            try (KvCache cache = lm.newCache(ids.length)) {
                NDArray all = lm.forward(List.of(new SequenceChunk(cache, ids)), LogitsMode.ALL, m);
                float[] flat = all.toFloatArray();
                int vocab = lm.config().vocabSize();
                logits = new double[ids.length][vocab];
                for (int t = 0; t < ids.length; t++) {
                    for (int j = 0; j < vocab; j++) {
                        logits[t][j] = flat[t * vocab + j];
                    }
                }
            }
            double[][] expected = ref.logits();
            int[] positions = ref.logitPositions();
            double scale = 0;
            double err = 0;
            for (int r = 0; r < positions.length; r++) {
                for (int j = 0; j < expected[r].length; j++) {
                    scale = Math.max(scale, Math.abs(expected[r][j]));
                    err = Math.max(err, Math.abs(expected[r][j] - logits[positions[r]][j]));
                }
            }
            assertTrue(err <= 1e-4 * scale, dir.getFileName() + ": max |logits − ref| " + err + " > 1e-4 · " + scale);
            double loss = 0;
            for (int t = 0; t + 1 < ids.length; t++) {
                loss += logSumExp(logits[t]) - logits[t][ids[t + 1]];
            }
            loss /= ids.length - 1;
            assertEquals(ref.loss(), loss, 1e-4, dir.getFileName() + ": loss");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void cachedGreedyDecodeMatchesTheReference(Path dir) {
        HfFixtures.Reference ref = HfFixtures.reference(dir);
        int[] expected = ref.greedyIds();
        try (ModelDir model = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            assertArrayEquals(expected, HfFixtures.greedy(model.model(), ref.prefixIds(), expected.length, m),
                    dir.getFileName() + ": greedy ids");
        }
    }

    private static double logSumExp(double[] row) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : row) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (double v : row) {
            sum += Math.exp(v - max);
        }
        return max + Math.log(sum);
    }
}
