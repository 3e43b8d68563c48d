package dev.cmoe.model.arch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.safetensors.DType;
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
    /** The references upcast the stored numbers to float32, so the comparison computes in float32. */
    private static final LoadSpec F32 = LoadSpec.full().withDtype(DType.F32);

    static Stream<Path> cases() {
        return HfFixtures.cases().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void fullForwardMatchesTheReference(Path dir) throws Exception {
        HfFixtures.Reference ref = HfFixtures.reference(dir);
        try (ModelDir model = ModelDir.open(dir, F32); NDManager m = NDManager.newBaseManager()) {
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
        try (ModelDir model = ModelDir.open(dir, F32); NDManager m = NDManager.newBaseManager()) {
            assertArrayEquals(expected, HfFixtures.greedy(model.model(), ref.prefixIds(), expected.length, m),
                    dir.getFileName() + ": greedy ids");
        }
    }

    /**
     * Computing in the stored dtype (bf16 or f16 weights, float32 activations) stays within that
     * dtype's rounding of the float32 reference: each projection rounds its input and output to 8
     * (bf16) or 11 (f16) significant bits, so the logits move by about 1e-2 of their scale and no
     * more; a wrong kernel (weights misread, a transposed product, the bf16 bits of the wrong half)
     * moves them by the scale itself.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("storedDtypeCases")
    void computingInTheStoredDtypeStaysWithinItsRounding(String name, DType dtype, double tolerance) throws Exception {
        Path dir = HfFixtures.cases().stream().filter(p -> p.getFileName().toString().equals(name)).findFirst()
                .orElseThrow();
        HfFixtures.Reference ref = HfFixtures.reference(dir);
        try (ModelDir model = ModelDir.open(dir); NDManager m = NDManager.newBaseManager()) {
            assertEquals(dtype, model.model().kernels().dtype(), "auto computes in the stored dtype");
            int[] ids = ref.inputIds();
            LlamaModel lm = model.model();
            float[] flat;
            try (KvCache cache = lm.newCache(ids.length)) {
                flat = lm.forward(List.of(new SequenceChunk(cache, ids)), LogitsMode.ALL, m).toFloatArray();
            }
            int vocab = lm.config().vocabSize();
            double[][] expected = ref.logits();
            int[] positions = ref.logitPositions();
            double scale = 0;
            double err = 0;
            for (int r = 0; r < positions.length; r++) {
                for (int j = 0; j < vocab; j++) {
                    scale = Math.max(scale, Math.abs(expected[r][j]));
                    err = Math.max(err, Math.abs(expected[r][j] - flat[positions[r] * vocab + j]));
                }
            }
            assertTrue(err <= tolerance * scale, name + " in " + dtype + ": max |logits − ref| " + err + " > "
                    + tolerance + " · " + scale);
            assertTrue(err > 0, name + " in " + dtype + ": identical to float32, so it did not compute in " + dtype);
        }
    }

    static Stream<org.junit.jupiter.params.provider.Arguments> storedDtypeCases() {
        return Stream.of(
                org.junit.jupiter.params.provider.Arguments.of("llama2", DType.BF16, 3e-2),
                org.junit.jupiter.params.provider.Arguments.of("qwen3", DType.BF16, 3e-2),
                org.junit.jupiter.params.provider.Arguments.of("llama2-f16", DType.F16, 4e-3));
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
