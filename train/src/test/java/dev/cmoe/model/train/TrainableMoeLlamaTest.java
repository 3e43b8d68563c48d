package dev.cmoe.model.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.BiasRule;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.SplitCheckpoint;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The trainable carved forward against the inference MoE, and what adaptation may and may not change. */
class TrainableMoeLlamaTest {
    static final LoraSpec LORA = new LoraSpec(4, 8, 0.1);
    static final int SEQ = 16;

    /** A tiny llama (vocabulary 300, as the training streams) carved S1A2E6 (5 routed experts of 16) with u, b ≠ 0. */
    static Carved llamaS1A2E6() {
        return carved(TinyCheckpoint.llama(), new MoeConfig(6, 1, 2, 16, MoeConfig.ANALYTICAL, "test", null), 11);
    }

    record Carved(ModelConfig config, MoeConfig moe, RandomModel source) {
    }

    static Carved carved(ModelConfig config, MoeConfig moe, long seed) {
        RandomModel w = SplitCheckpoint.split(RandomModel.of(config, seed), moe);
        Random r = new Random(seed + 1);
        for (int l = 0; l < config.numLayers(); l++) {
            float[] u = w.values(MoeWeightNames.routerScale(l));
            float[] b = w.values(MoeWeightNames.routerBias(l));
            for (int j = 0; j < u.length; j++) {
                u[j] = (float) r.nextGaussian();
                b[j] = (float) (0.05 * r.nextGaussian());
            }
        }
        return new Carved(config, moe, w);
    }

    static LlamaModel inference(Carved c, TensorSource source) {
        return LlamaModel.create(c.config(), source, (w, l) -> MoeFeedForward.load(w.manager(), w.source(), l, c.config(), c.moe()));
    }

    /** All-position logits of one sequence through the inference model: (tokens·vocab). */
    static float[] inferenceLogits(LlamaModel model, long[] ids) {
        int[] tokens = Arrays.stream(ids).mapToInt(v -> (int) v).toArray();
        try (NDManager m = NDManager.newBaseManager(); KvCache cache = model.newCache(tokens.length)) {
            return model.forward(List.of(new SequenceChunk(cache, tokens)), LogitsMode.ALL, m).toFloatArray();
        }
    }

    /** Logits of a (2, SEQ) batch through the trainable model without dropout: (2·SEQ·vocab). */
    static float[] trainableLogits(TrainableMoeLlama model, long[] ids) {
        try (NDManager m = NDManager.newBaseManager()) {
            return model.logits(m.create(ids, new Shape(ids.length / SEQ, SEQ)), false).toFloatArray();
        }
    }

    static long[] batch(int vocab, long seed) {
        return new Random(seed).longs(2 * SEQ, 0, vocab).toArray();
    }

    /** Compares the batch's logits with the inference model's, sequence by sequence: max relative error. */
    static double errorAgainstInference(LlamaModel reference, float[] got, long[] ids) {
        int vocab = got.length / ids.length;
        double err = 0;
        for (int b = 0; b < ids.length / SEQ; b++) {
            float[] want = inferenceLogits(reference, Arrays.copyOfRange(ids, b * SEQ, (b + 1) * SEQ));
            float[] row = Arrays.copyOfRange(got, b * SEQ * vocab, (b + 1) * SEQ * vocab);
            err = Math.max(err, relativeError(row, want));
        }
        return err;
    }

    static double relativeError(float[] actual, float[] expected) {
        double diff = 0;
        double ref = 0;
        for (int i = 0; i < expected.length; i++) {
            diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
            ref = Math.max(ref, Math.abs(expected[i]));
        }
        return diff / ref;
    }

    static void train(TrainableMoeLlama model, AdamW adam, int steps, double lr, double gamma) {
        TokenData data = TrainerTest.data(1);
        for (int s = 0; s < steps; s++) {
            Trainer.step((in, out) -> model.loss(in, out, true), model.parameters(), adam, data.batch(3, s, 2, SEQ),
                    2, SEQ, lr, 1.0);
            model.updateBias(model.takeLoads(), gamma);
        }
    }

    /** The tiny llama as a Qwen3: q/k norms and an explicit head_dim of 16 (hidden 64 / 8 heads = 8). */
    static ModelConfig qwen3Config() {
        com.google.gson.JsonObject o = TinyCheckpoint.llama().rawCopy();
        o.addProperty("model_type", "qwen3");
        com.google.gson.JsonArray a = new com.google.gson.JsonArray();
        a.add("Qwen3ForCausalLM");
        o.add("architectures", a);
        o.addProperty("head_dim", 16);
        ModelConfig c = ModelConfig.parse(o.toString(), "qwen3 test config");
        assertTrue(c.qkNorm());
        return c;
    }

    @Test
    void freshAdaptersReproduceTheInferenceForward() {
        List<Carved> cases = List.of(
                llamaS1A2E6(),
                // attention biases, tied embeddings, odd sizes, 8 routed experts of 8 neurons
                carved(RandomModel.qwen2Config(), new MoeConfig(10, 2, 3, 8, MoeConfig.ANALYTICAL, "test", null), 12),
                // no shared expert
                carved(TinyCheckpoint.llama(), new MoeConfig(4, 0, 1, 24, MoeConfig.ANALYTICAL, "test", null), 13),
                // Qwen3: per-head q/k norms, head_dim 16 != hidden / heads
                carved(qwen3Config(), new MoeConfig(6, 1, 2, 16, MoeConfig.ANALYTICAL, "test", null), 14),
                // Mistral: a sliding window shorter than the sequence
                carved(RandomModel.config("mistral", 64, 96, 2, 8, 2, 300, false, 6),
                        new MoeConfig(6, 1, 2, 16, MoeConfig.ANALYTICAL, "test", null), 15));
        for (Carved c : cases) {
            long[] ids = batch(c.config().vocabSize(), 5);
            try (LlamaModel reference = inference(c, c.source());
                 TrainableMoeLlama model = TrainableMoeLlama.load(c.config(), c.moe(), c.source(), LORA, 1)) {
                double err = errorAgainstInference(reference, trainableLogits(model, ids), ids);
                assertTrue(err < 1e-4, c.config().modelType() + " " + c.moe() + ": relative error " + err);
            }
        }
    }

    @Test
    void routerScalesTrainButBiasAndBaseWeightsAreNotParameters() {
        Carved c = carved(TinyCheckpoint.llama(), new MoeConfig(6, 1, 2, 16, MoeConfig.ANALYTICAL, "test", null), 11);
        for (int l = 0; l < c.config().numLayers(); l++) {
            Arrays.fill(c.source().values(MoeWeightNames.routerScale(l)), 0f); // u starts at zero, as after carving
        }
        try (TrainableMoeLlama model = TrainableMoeLlama.load(c.config(), c.moe(), c.source(), LORA, 1);
             AdamW adam = new AdamW(0.9, 0.95, 1e-8, 0)) {
            for (String name : model.parameters().keySet()) {
                assertTrue(name.endsWith(".lora_A") || name.endsWith(".lora_B")
                        || TrainableMoeLlama.isRouterScale(name),
                        "unexpected trainable parameter " + name);
            }
            assertEquals(c.config().numLayers() * (7 * 2 + 3 * 2 + 1), model.parameters().size());
            train(model, adam, 3, 1e-2, 1e-3);
            for (int l = 0; l < c.config().numLayers(); l++) {
                float[] u = model.scale(l);
                double max = 0;
                for (float v : u) {
                    max = Math.max(max, Math.abs(v));
                }
                assertTrue(max > 1e-3, "layer " + l + ": u did not train: " + Arrays.toString(u));
            }
        }
    }

    @Test
    void baseWeightsStayAsLoadedUntilMerged() {
        Carved c = llamaS1A2E6();
        try (TrainableMoeLlama model = TrainableMoeLlama.load(c.config(), c.moe(), c.source(), LORA, 1);
             AdamW adam = new AdamW(0.9, 0.95, 1e-8, 0)) {
            train(model, adam, 3, 1e-2, 1e-3);
            Map<String, SafetensorsWriter.Tensor> base = model.checkpointTensors(false);
            Map<String, SafetensorsWriter.Tensor> merged = model.checkpointTensors(true);
            int changed = 0;
            for (Map.Entry<String, SafetensorsWriter.Tensor> e : base.entrySet()) {
                String name = e.getKey();
                if (name.endsWith(".router.scale") || name.endsWith(".router.bias")) {
                    continue;
                }
                assertArrayEquals(c.source().values(name), values(e.getValue()), name + " changed before merging");
                if (!Arrays.equals(values(e.getValue()), values(merged.get(name)))) {
                    changed++;
                }
            }
            assertEquals(base.size() - 2 * c.config().numLayers(), changed, "every adapted weight moves when merged");
        }
    }

    @Test
    void mergedWeightsReproduceTheAdaptedModel() {
        Carved c = llamaS1A2E6();
        long[] ids = batch(c.config().vocabSize(), 6);
        try (TrainableMoeLlama model = TrainableMoeLlama.load(c.config(), c.moe(), c.source(), LORA, 1);
             AdamW adam = new AdamW(0.9, 0.95, 1e-8, 0)) {
            float[] before = trainableLogits(model, ids);
            train(model, adam, 4, 2e-2, 1e-2);
            float[] adapted = trainableLogits(model, ids);
            assertTrue(relativeError(adapted, before) > 1e-2, "the adapters must have changed the model");
            Map<String, SafetensorsWriter.Tensor> merged = model.checkpointTensors(true);
            TensorSource source = (name, shape) -> merged.containsKey(name)
                    ? merged.get(name).data().duplicate() : c.source().read(name, shape);
            try (LlamaModel reference = inference(c, source)) {
                double err = errorAgainstInference(reference, adapted, ids);
                assertTrue(err < 1e-4, "merged vs adapter model: relative error " + err);
            }
        }
    }

    @Test
    void aFewStepsLowerTheLoss() {
        Carved c = llamaS1A2E6();
        long[][] held = TrainerTest.data(2).evenWindows(4, SEQ);
        try (TrainableMoeLlama model = TrainableMoeLlama.load(c.config(), c.moe(), c.source(), LORA, 1);
             AdamW adam = new AdamW(0.9, 0.95, 1e-8, 0)) {
            Trainer.LossFunction eval = (in, out) -> model.loss(in, out, false);
            double first = Trainer.evaluate(eval, held, 4, SEQ, 2);
            train(model, adam, 12, 1e-2, 1e-3);
            double last = Trainer.evaluate(eval, held, 4, SEQ, 2);
            assertTrue(last < first - 0.3, "held-out loss " + first + " -> " + last);
        }
    }

    @Test
    void biasRuleLowersAnOverloadedExpertAndRaisesIdleOnes() {
        float[] b = {0, 0, 0, 0};
        BiasRule.update(b, new long[] {10, 2, 3, 5}, 0.5); // mean 5
        assertArrayEquals(new float[] {-0.5f, 0.5f, 0.5f, 0}, b);

        Carved c = llamaS1A2E6();
        float[] forced = c.source().values(MoeWeightNames.routerBias(0));
        Arrays.fill(forced, 0);
        forced[3] = 2; // s' ≤ 1, so expert 3 wins every token of layer 0
        try (TrainableMoeLlama model = TrainableMoeLlama.load(c.config(), c.moe(), c.source(), LORA, 1);
             NDManager m = NDManager.newBaseManager()) {
            model.logits(m.create(batch(c.config().vocabSize(), 7), new Shape(2, SEQ)), true);
            long[][] loads = model.takeLoads();
            assertEquals(2 * SEQ, loads[0][3], "expert 3 is selected by every token");
            model.updateBias(loads, 1e-3);
            float[] after = model.bias(0);
            assertEquals(2 - 1e-3, after[3], 1e-6, "the overloaded expert's bias falls");
            double mean = 2.0 * SEQ * c.moe().active() / c.moe().routed();
            for (int j = 0; j < after.length; j++) {
                if (loads[0][j] < mean) {
                    assertEquals(1e-3, after[j], 1e-6, "expert " + j + " below the mean load rises");
                }
            }
            long[][] none = model.takeLoads();
            assertEquals(0, Arrays.stream(none[0]).sum(), "takeLoads starts counting again");
        }
    }

    @Test
    void restoredAdaptersGiveTheSameModel() {
        Carved c = llamaS1A2E6();
        long[] ids = batch(c.config().vocabSize(), 8);
        try (TrainableMoeLlama trained = TrainableMoeLlama.load(c.config(), c.moe(), c.source(), LORA, 1);
             AdamW adam = new AdamW(0.9, 0.95, 1e-8, 0);
             TrainableMoeLlama fresh = TrainableMoeLlama.load(c.config(), c.moe(), c.source(), LORA, 99)) {
            train(trained, adam, 3, 1e-2, 1e-2);
            Map<String, SafetensorsWriter.Tensor> saved = trained.adapterTensors();
            fresh.restoreAdapters((name, shape) -> saved.get(name).data().duplicate());
            assertFalse(Arrays.equals(trained.bias(0), new float[c.moe().routed()]));
            assertArrayEquals(trained.bias(1), fresh.bias(1));
            assertArrayEquals(trainableLogits(trained, ids), trainableLogits(fresh, ids));
        }
    }

    private static float[] values(SafetensorsWriter.Tensor t) {
        FloatBuffer b = t.data().duplicate();
        float[] v = new float[b.remaining()];
        b.get(v);
        return v;
    }
}
