package dev.cmoe.model.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.ReferenceLlama;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TrainerTest {

    static TrainConfig tinyRun(int steps) {
        JsonObject o = JsonParser.parseString("""
                {"model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
                           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true},
                 "vocab_size": 300, "seed": 7, "batch_size": 4, "seq_len": 16, "steps": %d,
                 "lr": 0.01, "min_lr": 0.001, "warmup_steps": 2, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
                 "grad_clip": 1.0, "eval_every": 2, "eval_batches": 2, "checkpoint_every": 2}
                """.formatted(steps)).getAsJsonObject();
        return TrainConfig.parse(o);
    }

    /** A learnable stream: a repeating pattern with some noise, so a tiny model can lower its loss. */
    static TokenData data(long seed) {
        Random r = new Random(seed);
        int[] t = new int[4000];
        for (int i = 0; i < t.length; i++) {
            t[i] = r.nextInt(10) == 0 ? r.nextInt(300) : 3 + (i % 17);
        }
        return new TokenData(t);
    }

    static final Pretraining.Listener QUIET = recorder(new ArrayList<>());

    /** A listener that appends every step's loss to {@code losses}. */
    static Pretraining.Listener recorder(List<Double> losses) {
        return new Pretraining.Listener() {
            @Override
            public void onStep(int step, double loss, double gradNorm, double lr) {
                losses.add(loss);
            }

            @Override
            public void onValidation(int step, double loss) {
            }

            @Override
            public void onCheckpoint(int step, Path dir) {
            }
        };
    }

    static List<Double> losses(TrainConfig run, ModelConfig config, Path out) {
        List<Double> losses = new ArrayList<>();
        Pretraining.run(run, config, data(1), data(2), out, out, () -> false, recorder(losses));
        return losses;
    }

    @Test
    void trainingForwardMatchesTheReference() {
        ModelConfig config = RandomModel.qwen2Config();
        RandomModel weights = RandomModel.of(config, 5);
        int[] seq = new Random(3).ints(11, 0, config.vocabSize()).toArray();
        double[][] expected = new ReferenceLlama(weights).logits(seq);
        try (TrainableLlama model = TrainableLlama.load(config, weights); NDManager m = NDManager.newBaseManager()) {
            long[] ids = java.util.Arrays.stream(seq).asLongStream().toArray();
            float[] got = model.logits(m.create(ids, new Shape(1, seq.length))).toFloatArray();
            double maxDiff = 0;
            double maxRef = 0;
            for (int t = 0; t < seq.length; t++) {
                for (int v = 0; v < config.vocabSize(); v++) {
                    maxDiff = Math.max(maxDiff, Math.abs(got[t * config.vocabSize() + v] - expected[t][v]));
                    maxRef = Math.max(maxRef, Math.abs(expected[t][v]));
                }
            }
            assertTrue(maxDiff / maxRef < 1e-4, "relative error " + maxDiff / maxRef);
        }
    }

    @Test
    void trainableForwardIsTheInferenceDecoderForEveryFamilyFeature() {
        List<ModelConfig> configs = List.of(TrainableMoeLlamaTest.qwen3Config(),
                RandomModel.config("mistral", 64, 96, 2, 8, 2, 300, false, 6), RandomModel.qwen2Config());
        for (ModelConfig config : configs) {
            RandomModel weights = RandomModel.of(config, 17);
            int[] seq = new int[16];
            for (int i = 0; i < seq.length; i++) {
                seq[i] = (i * 37 + 5) % config.vocabSize();
            }
            long[] ids = java.util.Arrays.stream(seq).asLongStream().toArray();
            try (TrainableLlama model = TrainableLlama.load(config, weights);
                 dev.cmoe.model.llama.LlamaModel inference = dev.cmoe.model.llama.LlamaModel.dense(config, weights);
                 NDManager m = NDManager.newBaseManager();
                 dev.cmoe.model.llama.KvCache cache = inference.newCache(seq.length)) {
                float[] got = model.logits(m.create(ids, new Shape(1, seq.length))).toFloatArray();
                float[] want = inference.forward(List.of(new dev.cmoe.model.llama.SequenceChunk(cache, seq)),
                        dev.cmoe.model.llama.LogitsMode.ALL, m).toFloatArray();
                double maxDiff = 0;
                double maxRef = 0;
                for (int i = 0; i < want.length; i++) {
                    maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
                    maxRef = Math.max(maxRef, Math.abs(want[i]));
                }
                assertTrue(maxDiff / maxRef < 1e-5, config.modelType() + ": relative error " + maxDiff / maxRef);
            }
        }
    }

    @Test
    void sameSeedSameLossesAndLossGoesDown(@TempDir Path tmp) {
        TrainConfig run = tinyRun(12);
        ModelConfig config = Pretraining.modelConfig(run, 0, 1);
        List<Double> a = losses(run, config, tmp.resolve("a"));
        List<Double> b = losses(run, config, tmp.resolve("b"));
        assertEquals(12, a.size());
        assertEquals(a, b, "same seed and config must give the same losses");
        double first = (a.get(0) + a.get(1)) / 2;
        double last = (a.get(10) + a.get(11)) / 2;
        assertTrue(last < first - 0.5, "loss should fall on a learnable stream: " + a);
        assertTrue(Math.abs(a.get(0) - Math.log(300)) < 0.5, "initial loss near ln(vocab): " + a.get(0));
    }

    @Test
    void resumedRunEqualsUninterruptedRun(@TempDir Path tmp) throws Exception {
        TrainConfig run = tinyRun(6);
        ModelConfig config = Pretraining.modelConfig(run, 0, 1);
        List<Double> straight = losses(run, config, tmp.resolve("straight"));
        // a stop request ends the run after its first step, with a resumable checkpoint
        Path out = tmp.resolve("resumed");
        List<Double> firstPart = new ArrayList<>();
        Pretraining.run(tinyRun(6), config, data(1), data(2), out, out, () -> true, recorder(firstPart));
        assertEquals(1, firstPart.size(), "a passed deadline stops after one step with a checkpoint");
        assertTrue(Files.exists(out.resolve(Pretraining.OPTIMIZER_FILE)));
        List<Double> rest = losses(run, config, out);
        List<Double> joined = new ArrayList<>(firstPart);
        joined.addAll(rest);
        assertEquals(straight, joined);
        try (Checkpoint a = Checkpoint.open(tmp.resolve("straight")); Checkpoint b = Checkpoint.open(out)) {
            for (String name : a.names()) {
                float[] x = new float[a.readF32(name).remaining()];
                a.readF32(name).get(x);
                float[] y = new float[b.readF32(name).remaining()];
                b.readF32(name).get(y);
                assertArrayEquals(x, y, name);
            }
        }
        assertTrue(!Files.exists(out.resolve(Pretraining.OPTIMIZER_FILE)), "a finished run drops the optimizer state");
    }

    @Test
    void resumeWithADifferentConfigIsRefused(@TempDir Path tmp) {
        Path out = tmp.resolve("run");
        TrainConfig run = tinyRun(4);
        ModelConfig config = Pretraining.modelConfig(run, 0, 1);
        Pretraining.run(run, config, data(1), data(2), out, out, () -> true, QUIET);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Pretraining.run(tinyRun(8), config, data(1), data(2), out, out, () -> false, QUIET));
        assertTrue(e.getMessage().contains("different training config"), e.getMessage());
    }

    @Test
    void scheduleWarmsUpThenDecaysToMinimum() {
        TrainConfig run = tinyRun(100);
        assertEquals(0.005, run.learningRate(0), 1e-12);
        assertEquals(0.01, run.learningRate(1), 1e-12);
        assertEquals(0.01, run.learningRate(2), 1e-12);
        assertEquals(0.001, run.learningRate(100), 1e-12);
        assertTrue(run.learningRate(50) < 0.01 && run.learningRate(50) > 0.001);
    }

    @Test
    void gradientsAreZeroedBetweenSteps() {
        ModelConfig config = Pretraining.modelConfig(tinyRun(3), 0, 1);
        try (TrainableLlama model = TrainableLlama.initialise(config, 1); AdamW adam = new AdamW(0.9, 0.95, 1e-8, 0)) {
            long[][] batch = data(1).batch(1, 0, 2, 8);
            Trainer.StepResult first = Trainer.step(model::loss, model.parameters(), adam, batch, 2, 8, 0.0, 1e9);
            Trainer.StepResult again = Trainer.step(model::loss, model.parameters(), adam, batch, 2, 8, 0.0, 1e9);
            // lr 0 leaves the weights alone, so the same batch must give the same loss and gradient norm
            assertEquals(first.loss(), again.loss(), 1e-6);
            assertEquals(first.gradNorm(), again.gradNorm(), first.gradNorm() * 1e-5);
        }
    }

    @Test
    void aNonFiniteStepUpdatesNothingAndTheNextStepStillLearns() {
        ModelConfig config = Pretraining.modelConfig(tinyRun(3), 0, 1);
        try (TrainableLlama model = TrainableLlama.initialise(config, 1); AdamW adam = new AdamW(0.9, 0.95, 1e-8, 0)) {
            long[][] batch = data(1).batch(1, 0, 2, 8);
            java.util.Map<String, float[]> before = new java.util.HashMap<>();
            model.parameters().forEach((name, p) -> before.put(name, p.toFloatArray()));
            Trainer.StepResult bad = Trainer.step((in, out) -> model.loss(in, out).mul(Float.NaN), model.parameters(),
                    adam, batch, 2, 8, 1e-2, 1.0);
            assertTrue(!bad.applied() && Double.isNaN(bad.loss()), "loss " + bad.loss());
            model.parameters().forEach((name, p) -> org.junit.jupiter.api.Assertions.assertArrayEquals(
                    before.get(name), p.toFloatArray(), 0f, name + " must not move on a NaN step"));
            Trainer.StepResult good = Trainer.step(model::loss, model.parameters(), adam, batch, 2, 8, 1e-2, 1.0);
            assertTrue(good.applied());
            Trainer.StepResult after = Trainer.step(model::loss, model.parameters(), adam, batch, 2, 8, 0.0, 1.0);
            assertTrue(after.loss() < good.loss(), "the step after a skipped one trains: " + good.loss() + " -> "
                    + after.loss());
            assertTrue(bad.diverged(" at step 1").getMessage().contains("training diverged: loss NaN"));
        }
    }
}
