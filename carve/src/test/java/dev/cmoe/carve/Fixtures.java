package dev.cmoe.carve;

import ai.djl.ndarray.NDManager;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

/** Tiny dense models on disk and calibration text for carving tests. */
final class Fixtures {
    private Fixtures() {
    }

    /** A two-layer llama (hidden 64, intermediate 96, context 128) written as a model directory. */
    static Path denseModel(Path dir, long seed) throws IOException {
        return TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), seed), dir, DType.F32);
    }

    /** The same with {@code layers} layers. */
    static Path denseModel(Path dir, long seed, int layers) throws IOException {
        ModelConfig c = RandomModel.config("llama", 64, 96, layers, 8, 2, 300, false, null);
        return TinyCheckpoint.write(RandomModel.of(c, seed), dir, DType.F32);
    }

    /** Seeded random sentences over the fixture tokenizer's words (shared with other modules' tests). */
    static Path calibrationText(Path file) throws IOException {
        return TinyCheckpoint.calibrationText(file);
    }

    /** Small calibration so tests stay fast: 4 windows of 32 tokens. */
    static CarveOptions options(int shared, int active, int experts) {
        return CarveOptions.of(shared, active, experts).withCalibration(4, 32, 7);
    }

    /** All-position logits of {@code tokens}: (tokens·vocab). */
    static float[] logits(LlamaModel model, int[] tokens) {
        try (NDManager m = NDManager.newBaseManager(); KvCache cache = model.newCache(tokens.length)) {
            return model.forward(List.of(new SequenceChunk(cache, tokens)), LogitsMode.ALL, m).toFloatArray();
        }
    }

    /** max |a − b| / max |b|. */
    static double relativeError(float[] actual, float[] expected) {
        double diff = 0;
        double ref = 0;
        for (int i = 0; i < expected.length; i++) {
            diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
            ref = Math.max(ref, Math.abs(expected[i]));
        }
        return diff / ref;
    }
}
