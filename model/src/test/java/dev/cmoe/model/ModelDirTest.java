package dev.cmoe.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.SafetensorsException;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.ReferenceLlama;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelDirTest {
    @TempDir
    Path tmp;

    static float[] logits(ModelDir dir, int[] tokens) {
        try (NDManager m = NDManager.newBaseManager(); KvCache cache = dir.model().newCache(tokens.length)) {
            return dir.model().forward(List.of(new SequenceChunk(cache, tokens)), LogitsMode.ALL, m).toFloatArray();
        }
    }

    /** Rounds every weight to a value that F32, F16 and BF16 all store exactly. */
    static RandomModel exactInEveryDtype(RandomModel w) {
        w.tensors().values().forEach(t -> {
            float[] v = t.data();
            for (int i = 0; i < v.length; i++) {
                float bf = Float.intBitsToFloat(Float.floatToRawIntBits(v[i]) & 0xFFFF0000);
                v[i] = Math.abs(bf) < 1e-3f ? 0f : bf;
            }
        });
        return w;
    }

    @Test
    void loadsFromFilesAndMatchesTheReference() throws Exception {
        ModelConfig config = TinyCheckpoint.llama();
        RandomModel weights = RandomModel.of(config, 12);
        Path dir = TinyCheckpoint.write(weights, tmp.resolve("llama"), DType.F32);
        try (ModelDir md = ModelDir.open(dir)) {
            int[] prompt = md.tokenizer().encodeIds("The jury said", true);
            assertEquals(md.tokenizer().bosId(), prompt[0]);
            double[][] expected = new ReferenceLlama(weights).logits(prompt);
            float[] got = logits(md, prompt);
            double maxDiff = 0;
            double maxRef = 0;
            for (int t = 0; t < prompt.length; t++) {
                for (int v = 0; v < config.vocabSize(); v++) {
                    maxDiff = Math.max(maxDiff, Math.abs(got[t * config.vocabSize() + v] - expected[t][v]));
                    maxRef = Math.max(maxRef, Math.abs(expected[t][v]));
                }
            }
            assertTrue(maxDiff / maxRef < 1e-4, "relative error " + maxDiff / maxRef);
        }
    }

    @Test
    void f32F16AndBf16FilesLoadTheSameValues() throws Exception {
        ModelConfig config = TinyCheckpoint.llama();
        RandomModel weights = exactInEveryDtype(RandomModel.of(config, 13));
        int[] tokens = {0, 5, 9, 77, 200, 31};
        float[] f32;
        try (ModelDir md = ModelDir.open(TinyCheckpoint.write(weights, tmp.resolve("f32"), DType.F32))) {
            f32 = logits(md, tokens);
        }
        for (DType dtype : new DType[] {DType.F16, DType.BF16}) {
            Path dir = TinyCheckpoint.write(weights, tmp.resolve(dtype.name()), dtype);
            try (ModelDir md = ModelDir.open(dir, LoadSpec.full().withDtype(DType.F32))) {
                assertArrayEquals(f32, logits(md, tokens), dtype + " weights must load to the F32 values");
            }
            // auto computes in the stored dtype: only that dtype's rounding of activations separates it
            try (ModelDir md = ModelDir.open(dir)) {
                assertEquals(dtype, md.model().kernels().dtype());
                float[] got = logits(md, tokens);
                double err = 0;
                double scale = 0;
                for (int i = 0; i < got.length; i++) {
                    err = Math.max(err, Math.abs(got[i] - f32[i]));
                    scale = Math.max(scale, Math.abs(f32[i]));
                }
                assertTrue(err > 0 && err < 3e-2 * scale, dtype + ": max |Δ| " + err + " of scale " + scale);
            }
        }
    }

    @Test
    void aConfigWhoseTorchDtypeDisagreesWithTheTensorsIsRefused() throws Exception {
        RandomModel weights = RandomModel.of(TinyCheckpoint.llama(), 3);
        Path dir = TinyCheckpoint.write(weights, tmp.resolve("disagree"), DType.BF16);
        com.google.gson.JsonObject raw = weights.config().rawCopy();
        raw.addProperty("torch_dtype", "float16");
        Files.writeString(dir.resolve("config.json"), raw.toString(), StandardCharsets.UTF_8);
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> ModelDir.open(dir).close());
        assertTrue(e.getMessage().contains("torch_dtype float16") && e.getMessage().contains("stored as BF16")
                && e.getMessage().contains("tensor '"), e.getMessage());
    }

    @Test
    void anUnknownDtypeChoiceIsRefusedNamingTheChoices() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> LoadSpec.full().withDtype("int8"));
        assertTrue(e.getMessage().contains("'int8'") && e.getMessage().contains("f16, bf16"), e.getMessage());
        assertEquals(java.util.Optional.of(DType.BF16), LoadSpec.parseDtype("bfloat16"));
        assertEquals(java.util.Optional.empty(), LoadSpec.parseDtype("auto"));
    }

    @Test
    void goldenGreedyTokensOfAFixedTinyModel() throws Exception {
        ModelConfig config = TinyCheckpoint.llama();
        RandomModel weights = RandomModel.of(config, 99);
        Path dir = TinyCheckpoint.write(weights, tmp.resolve("golden"), DType.F32);
        try (ModelDir md = ModelDir.open(dir)) {
            int[] out = Generator.generate(md.model(), new int[] {0, 42, 7}, 8, SamplingParams.greedy(), Set.of(),
                    t -> { }).tokens();
            // fixed seed, fixed weights, temperature 0: any change to the forward pass shows up here
            assertArrayEquals(GOLDEN, out, java.util.Arrays.toString(out));
        }
        // the golden tokens are themselves what the double-precision reference picks
        int[] seq = {0, 42, 7};
        ReferenceLlama ref = new ReferenceLlama(weights);
        for (int expected : GOLDEN) {
            double[] last = ref.logits(seq)[seq.length - 1];
            int best = 0;
            for (int v = 1; v < last.length; v++) {
                best = last[v] > last[best] ? v : best;
            }
            assertEquals(expected, best);
            seq = java.util.Arrays.copyOf(seq, seq.length + 1);
            seq[seq.length - 1] = best;
        }
    }

    static final int[] GOLDEN = {56, 212, 15, 211, 242, 228, 24, 120};

    @Test
    void missingTensorIsNamedAndNothingStaysLoaded() throws Exception {
        ModelConfig config = RandomModel.config("qwen2", 48, 80, 2, 6, 2, 300, true, null);
        RandomModel weights = RandomModel.of(config, 3);
        weights.tensors().remove("model.layers.1.self_attn.k_proj.bias");
        Path dir = TinyCheckpoint.write(weights, tmp.resolve("broken"), DType.F32);
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> ModelDir.open(dir));
        assertTrue(e.getMessage().contains("model.layers.1.self_attn.k_proj.bias"), e.getMessage());
    }

    @Test
    void wrongShapeIsNamed() throws Exception {
        ModelConfig config = TinyCheckpoint.llama();
        RandomModel weights = RandomModel.of(config, 3);
        Path dir = TinyCheckpoint.write(weights, tmp.resolve("shape"), DType.F32);
        // claim a larger intermediate size than the checkpoint holds
        Files.writeString(dir.resolve("config.json"), config.toJson().replace("\"intermediate_size\": 96",
                "\"intermediate_size\": 128"), StandardCharsets.UTF_8);
        SafetensorsException e = assertThrows(SafetensorsException.class, () -> ModelDir.open(dir));
        assertTrue(e.getMessage().contains("mlp.gate_proj.weight"), e.getMessage());
        assertTrue(e.getMessage().contains("128"), e.getMessage());
    }

    @Test
    void missingDirectoryAndTokenizerAreClearErrors() throws Exception {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ModelDir.open(tmp.resolve("nowhere")));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
        Path dir = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 1), tmp.resolve("notok"), DType.F32);
        Files.delete(dir.resolve("tokenizer.json"));
        RuntimeException t = assertThrows(RuntimeException.class, () -> ModelDir.open(dir));
        assertTrue(t.getMessage().contains("tokenizer.json"), t.getMessage());
    }
}
