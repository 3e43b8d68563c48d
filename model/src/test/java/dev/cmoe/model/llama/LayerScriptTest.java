package dev.cmoe.model.llama;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.HfFixtures;
import dev.cmoe.model.testing.RandomModel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The layer script computes what the Java operations it mirrors compute: the same model's cached
 * steps, run once as the script and once as the Java path, give the same logits to float32
 * rounding, through prefill chunks, decode steps, a batch of sequences at different positions and
 * a sliding window the steps cross, in every architecture and dtype.
 */
class LayerScriptTest {

    static Stream<Arguments> randomModels() {
        return Stream.of(
                Arguments.of(RandomModel.llamaConfig(), DType.F32),
                Arguments.of(RandomModel.llamaConfig(), DType.BF16),
                Arguments.of(RandomModel.llamaConfig(), DType.F16),
                Arguments.of(RandomModel.qwen2Config(), DType.F32),
                Arguments.of(RandomModel.mistralConfig(5), DType.F32));
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("randomModels")
    void scriptedStepsEqualTheJavaOperations(ModelConfig config, DType dtype) {
        DecoderWeights weights = DecoderWeights.frozen(NDManager.newBaseManager(), RandomModel.of(config, 5),
                WeightKernels.of(dtype));
        try (LlamaModel model = LlamaModel.create(config, weights, LlamaModel.denseFeedForwards(config))) {
            compare(model, dtype == DType.F32 ? 1e-5 : 1e-3);
        }
    }

    /**
     * With a threshold of 0 every product of a few rows runs as its two column halves at once
     * (one on another engine thread) and the carved block's shared expert beside its routed
     * ones: the results must not move.
     */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("randomModels")
    void productsInHalvesOnTwoThreadsEqualTheJavaOperations(ModelConfig config, DType dtype) {
        int threads = JniUtils.getNumThreads();
        JniUtils.setNumThreads(2);
        DecoderWeights weights = DecoderWeights.frozen(NDManager.newBaseManager(), RandomModel.of(config, 6),
                WeightKernels.of(dtype));
        try (LlamaModel model = LlamaModel.create(config, weights, LlamaModel.denseFeedForwards(config), 0)) {
            assertTrue(LayerScript.splits(1, 1, dtype, 0), "a threshold of 0 splits every product");
            compare(model, dtype == DType.F32 ? 1e-5 : 1e-3);
        } finally {
            JniUtils.setNumThreads(threads);
        }
    }

    static Stream<Path> fixtures() {
        return HfFixtures.cases().stream();
    }

    /** The golden fixtures add q/k norms (qwen3), a head size apart from hidden/heads and every rope scaling. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("fixtures")
    void scriptedStepsEqualTheJavaOperationsOnTheFixtures(Path dir) {
        try (ModelDir m = ModelDir.open(dir, LoadSpec.full().withDtype(DType.F32))) {
            compare(m.model(), 1e-5);
        }
    }

    @Test
    void onlyFrozenDenseBlocksAreScriptedAndAReplacedFeedForwardIsNot() {
        ModelConfig config = RandomModel.llamaConfig();
        try (LlamaModel model = LlamaModel.dense(config, RandomModel.of(config, 2))) {
            assertArrayEquals(new boolean[] {true, true}, model.scriptedParts(0));
            FeedForward dense = model.feedForward(1);
            FeedForward plain = new FeedForward() { // the same function, not a DenseFeedForward
                @Override
                public ai.djl.ndarray.NDArray forward(ai.djl.ndarray.NDArray x) {
                    return dense.forward(x);
                }

                @Override
                public void close() {
                }
            };
            model.replaceFeedForward(1, plain);
            assertArrayEquals(new boolean[] {true, false}, model.scriptedParts(1));
            model.replaceFeedForward(1, dense);
            assertArrayEquals(new boolean[] {true, true}, model.scriptedParts(1));
            model.setScripted(false);
            assertArrayEquals(new boolean[] {false, false}, model.scriptedParts(0));
        }
    }

    /**
     * Runs the same steps with the script on and off (fresh caches each time) and compares every
     * step's logits, relative to their largest magnitude.
     */
    private static void compare(LlamaModel model, double tolerance) {
        ModelConfig c = model.config();
        for (int l = 0; l < c.numLayers(); l++) {
            assertArrayEquals(new boolean[] {true, true}, model.scriptedParts(l), "layer " + l + " is scripted");
        }
        List<float[]> scripted = steps(model, true);
        List<float[]> java = steps(model, false);
        assertEquals(java.size(), scripted.size());
        for (int s = 0; s < java.size(); s++) {
            float[] a = scripted.get(s);
            float[] b = java.get(s);
            double scale = 0;
            double diff = 0;
            for (int i = 0; i < b.length; i++) {
                scale = Math.max(scale, Math.abs(b[i]));
                diff = Math.max(diff, Math.abs(a[i] - b[i]));
            }
            assertTrue(diff <= tolerance * scale, c.modelType() + " step " + s + ": |scripted − java| " + diff
                    + " > " + tolerance + " · " + scale);
        }
    }

    private static List<float[]> steps(LlamaModel model, boolean scripted) {
        model.setScripted(scripted);
        int vocab = model.config().vocabSize();
        List<float[]> out = new ArrayList<>();
        try (NDManager m = NDManager.newBaseManager();
             KvCache a = model.newCache(32);
             KvCache b = model.newCache(32)) {
            // a prefill alone, then a batch of a prefill chunk beside a decode token, then decode steps
            out.add(model.forward(List.of(new SequenceChunk(a, LlamaModelTest.tokens(6, vocab, 1))),
                    LogitsMode.ALL, m).toFloatArray());
            out.add(model.forward(List.of(new SequenceChunk(b, LlamaModelTest.tokens(3, vocab, 2)),
                    new SequenceChunk(a, new int[] {4})), LogitsMode.ALL, m).toFloatArray());
            int[] next = LlamaModelTest.tokens(8, vocab, 3);
            for (int t = 0; t < next.length; t++) {
                out.add(model.forward(List.of(new SequenceChunk(a, new int[] {next[t]}),
                        new SequenceChunk(b, new int[] {next[next.length - 1 - t]})), LogitsMode.LAST, m).toFloatArray());
            }
        } finally {
            model.setScripted(true);
        }
        return out;
    }
}
