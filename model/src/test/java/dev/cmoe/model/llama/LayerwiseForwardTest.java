package dev.cmoe.model.llama;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

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
}
