package dev.cmoe.model.llama;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.testing.RandomModel;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Walking the layers with embedWindows/forwardLayer must feed every FFN what the batched step feeds it. */
class LayerwiseForwardTest {
    /** Records the input of the FFN it wraps. */
    private static final class Recording implements FeedForward {
        final FeedForward inner;
        final List<float[]> inputs = new ArrayList<>();

        Recording(FeedForward inner) {
            this.inner = inner;
        }

        @Override
        public NDArray forward(NDArray x) {
            inputs.add(x.toFloatArray());
            return inner.forward(x);
        }

        @Override
        public void close() {
        }
    }

    static List<ModelConfig> configs() {
        return List.of(RandomModel.llamaConfig(), RandomModel.qwen2Config(), RandomModel.mistralConfig(5));
    }

    @ParameterizedTest
    @MethodSource("configs")
    void lastLayerSeesTheSameFfnInput(ModelConfig config) {
        int last = config.numLayers() - 1;
        int[][] windows = {LlamaModelTest.tokens(9, config.vocabSize(), 1), LlamaModelTest.tokens(9, config.vocabSize(), 2)};
        try (LlamaModel model = LlamaModel.dense(config, RandomModel.of(config, 5));
             NDManager m = NDManager.newBaseManager()) {
            Recording stepwise = new Recording(model.feedForward(last));
            model.replaceFeedForward(last, stepwise);
            List<SequenceChunk> batch = new ArrayList<>();
            List<KvCache> caches = new ArrayList<>();
            for (int[] w : windows) {
                caches.add(model.newCache(w.length));
                batch.add(new SequenceChunk(caches.getLast(), w));
            }
            model.forward(batch, LogitsMode.LAST, m);
            caches.forEach(KvCache::close);

            Recording layerwise = new Recording(stepwise.inner);
            model.replaceFeedForward(last, layerwise);
            NDArray x = model.embedWindows(windows, m);
            for (int l = 0; l <= last; l++) {
                x = model.forwardLayer(l, x, windows.length, 9, m);
            }
            assertArrayEquals(stepwise.inputs.getFirst(), layerwise.inputs.getFirst(), 1e-5f);
            assertThrows(IllegalArgumentException.class, () -> model.forwardLayer(0, model.embedWindows(windows, m), 3, 9, m));
        }
    }

    @ParameterizedTest
    @MethodSource("configs")
    void aModelLoadedOneLayerAtATimeComputesWhatTheWholeModelDoes(ModelConfig config) {
        int[][] windows = {LlamaModelTest.tokens(7, config.vocabSize(), 3), LlamaModelTest.tokens(7, config.vocabSize(), 4)};
        RandomModel weights = RandomModel.of(config, 6);
        try (LlamaModel whole = LlamaModel.dense(config, weights);
             LlamaModel streamed = LlamaModel.layerwise(config, NDManager.newBaseManager(), weights,
                     WeightKernels.f32(), LlamaModel.denseFeedForwards(config));
             NDManager m = NDManager.newBaseManager()) {
            IllegalStateException notLoaded = assertThrows(IllegalStateException.class,
                    () -> streamed.forwardLayer(0, streamed.embedWindows(windows, m), 2, 7, m));
            assertTrue(notLoaded.getMessage().contains("layer 0 is not loaded"), notLoaded.getMessage());
            assertThrows(IllegalStateException.class, () -> whole.loadLayer(0));
            assertThrows(IllegalStateException.class, () -> whole.releaseLayer(0));
            NDArray a = whole.embedWindows(windows, m);
            NDArray b = streamed.embedWindows(windows, m);
            for (int l = 0; l < config.numLayers(); l++) {
                streamed.loadLayer(l);
                int layer = l;
                assertThrows(IllegalStateException.class, () -> streamed.loadLayer(layer));
                NDManager own = streamed.layerManager(l);
                a = whole.forwardLayer(l, a, 2, 7, m);
                b = streamed.forwardLayer(l, b, 2, 7, m);
                streamed.releaseLayer(l);
                assertFalse(own.isOpen(), "layer " + l + "'s tensors are freed with it");
                assertThrows(IllegalStateException.class, () -> streamed.feedForward(layer));
            }
            assertArrayEquals(a.toFloatArray(), b.toFloatArray(), 0f);
        }
    }
}
