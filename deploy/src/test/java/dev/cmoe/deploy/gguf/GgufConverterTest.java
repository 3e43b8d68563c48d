package dev.cmoe.deploy.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.deploy.bench.SyntheticCheckpoint;
import dev.cmoe.deploy.bench.SyntheticModel;
import dev.cmoe.deploy.bench.SyntheticShapes;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.Environment;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code cmoe gguf}: the file read back by an independent reader, and the q/k permutation checked against RoPE itself. */
class GgufConverterTest {
    private static final int HEADS = 4;
    private static final int KV_HEADS = 2;
    private static final int HIDDEN = 32;
    private static final int HEAD_DIM = HIDDEN / HEADS;
    private static final int VOCAB = 4100; // the shipped tokenizer has 4096 ids: four are padding
    private static final double THETA = 10000.0;

    @TempDir
    Path tmp;

    private static Path shipped() {
        return Environment.repoRoot().resolve("models/brown-llama");
    }

    /** A two-layer GQA llama in two shards of f16, with the shipped tokenizer. */
    private Path tinyLlama(String name) {
        JsonObject c = SyntheticShapes.config("llama-2-7b", 2);
        c.addProperty("hidden_size", HIDDEN);
        c.addProperty("intermediate_size", 48);
        c.addProperty("num_attention_heads", HEADS);
        c.addProperty("num_key_value_heads", KV_HEADS);
        c.addProperty("vocab_size", VOCAB);
        c.addProperty("max_position_embeddings", 512);
        Path dir = tmp.resolve(name);
        SyntheticCheckpoint.write(c, Optional.empty(), new SyntheticModel(7), shipped(), dir, DType.F16, 200_000,
                false);
        return dir;
    }

    @Test
    void llamaFileReadsBackWithItsMetadataTensorsAndData() throws Exception {
        Path model = tinyLlama("llama");
        assertTrue(Files.exists(model.resolve(Checkpoint.INDEX_FILE)), "the test covers a sharded checkpoint");
        for (GgufType type : GgufType.values()) {
            Path out = tmp.resolve("llama-" + type + ".gguf");
            GgufConverter.Result r = GgufConverter.convert(model, out, type, n -> { }, w -> { });
            GgufFile g = new GgufFile(out);
            assertEquals(0x46554747, g.magic);
            assertEquals(3, g.version);
            assertEquals("llama", g.kv.get("general.architecture"));
            assertEquals((long) type.fileType(), g.kv.get("general.file_type"));
            assertEquals((long) HEADS, g.kv.get("llama.attention.head_count"));
            assertEquals((long) KV_HEADS, g.kv.get("llama.attention.head_count_kv"));
            assertEquals((long) HIDDEN, g.kv.get("llama.embedding_length"));
            assertEquals(48L, g.kv.get("llama.feed_forward_length"));
            assertEquals(2L, g.kv.get("llama.block_count"));
            assertEquals(512L, g.kv.get("llama.context_length"));
            assertEquals((long) HEAD_DIM, g.kv.get("llama.rope.dimension_count"));
            assertEquals(THETA, (Double) g.kv.get("llama.rope.freq_base"), 0);
            assertEquals(1e-5, (Double) g.kv.get("llama.attention.layer_norm_rms_epsilon"), 1e-12);
            assertTokenizer(g);

            // infos: llama.cpp's names, GGUF's reversed dims, norms in f32, aligned and packed offsets
            assertEquals(r.tensors(), g.tensors.size());
            assertEquals(3 + 2 * 9, g.tensors.size(), "embeddings, final norm, head and 9 per layer");
            assertArrayEquals(new long[] {HIDDEN, VOCAB}, g.tensors.get("token_embd.weight").dims());
            assertArrayEquals(new long[] {HIDDEN, KV_HEADS * HEAD_DIM}, g.tensors.get("blk.1.attn_k.weight").dims());
            assertArrayEquals(new long[] {48, HIDDEN}, g.tensors.get("blk.0.ffn_down.weight").dims());
            assertArrayEquals(new long[] {HIDDEN}, g.tensors.get("blk.0.attn_norm.weight").dims());
            assertEquals(0, g.tensors.get("output_norm.weight").type());
            assertEquals(type.ggmlType(), g.tensors.get("output.weight").type());
            assertEquals(0, g.dataStart % 32);
            long end = 0;
            for (GgufFile.Info t : g.tensors.values()) {
                assertEquals(0, t.offset() % 32, t.name() + " is aligned");
                assertTrue(t.offset() >= end, t.name() + " does not overlap the previous tensor");
                assertTrue(t.offset() - end < 32, t.name() + " follows the previous tensor, padded to 32 bytes");
                long n = 1;
                for (long d : t.dims()) {
                    n *= d;
                }
                end = t.offset() + n * GgufFile.elementBytes(t.type());
            }
            assertEquals(g.fileSize, g.dataStart + GgufWriter.align(end));

            try (Checkpoint ckpt = Checkpoint.open(model)) {
                assertSame(type, ckpt, g, "token_embd.weight", "model.embed_tokens.weight", false);
                assertSame(type, ckpt, g, "blk.1.ffn_gate.weight", "model.layers.1.mlp.gate_proj.weight", false);
                assertSame(type, ckpt, g, "blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight", false);
                assertSame(GgufType.F32, ckpt, g, "blk.1.ffn_norm.weight",
                        "model.layers.1.post_attention_layernorm.weight", false);
                assertSame(type, ckpt, g, "output.weight", "lm_head.weight", false);
                assertSame(type, ckpt, g, "blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", true);
                assertSame(type, ckpt, g, "blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight", true);
            }
            try (Stream<Path> files = Files.list(tmp)) {
                assertEquals(List.of(), files.filter(p -> p.getFileName().toString().contains(".tmp-")).toList(),
                        "no temporary file is left behind");
            }
        }
    }

    private static void assertTokenizer(GgufFile g) throws Exception {
        assertEquals("gpt2", g.kv.get("tokenizer.ggml.model"));
        assertEquals("gpt-2", g.kv.get("tokenizer.ggml.pre"));
        List<?> tokens = (List<?>) g.kv.get("tokenizer.ggml.tokens");
        List<?> types = (List<?>) g.kv.get("tokenizer.ggml.token_type");
        assertEquals(VOCAB, tokens.size());
        assertEquals(VOCAB, types.size());
        JsonObject tok = JsonParser.parseString(Files.readString(shipped().resolve("tokenizer.json"),
                StandardCharsets.UTF_8)).getAsJsonObject();
        JsonObject vocab = tok.getAsJsonObject("model").getAsJsonObject("vocab");
        for (String t : List.of("Ġthe", "he", "Ā")) {
            assertEquals(t, tokens.get(vocab.get(t).getAsInt()), "token " + t + " keeps its id");
            assertEquals(1L, types.get(vocab.get(t).getAsInt()));
        }
        assertEquals("<s>", tokens.get(0));
        assertEquals(3L, types.get(0), "a special added token is a control token");
        assertEquals("[PAD4099]", tokens.get(4099));
        assertEquals(5L, types.get(4099), "ids the tokenizer never produces are unused");
        List<?> merges = (List<?>) g.kv.get("tokenizer.ggml.merges");
        assertEquals(tok.getAsJsonObject("model").getAsJsonArray("merges").size(), merges.size());
        assertEquals("Ġ t", merges.get(0));
        assertEquals(0L, g.kv.get("tokenizer.ggml.bos_token_id"));
        assertEquals(1L, g.kv.get("tokenizer.ggml.eos_token_id"));
        assertEquals(false, g.kv.get("tokenizer.ggml.add_bos_token"));
    }

    /** The stored tensor equals the checkpoint's (rows permuted for q/k) up to {@code type}'s rounding. */
    private static void assertSame(GgufType type, Checkpoint ckpt, GgufFile g, String name, String source,
                                   boolean permuted) {
        float[] want = floats(ckpt.readF32(source));
        float[] got = g.data(name);
        int width = Math.toIntExact(g.tensors.get(name).dims()[0]);
        assertEquals(want.length, got.length, name);
        boolean identity = true;
        for (int i = 0; i < got.length; i++) {
            int row = i / width;
            int src = permuted ? referenceSourceRow(row) : row;
            identity &= src == row;
            float w = want[src * width + i % width];
            switch (type) {
                // the checkpoint is f16, so f32 and f16 hold it exactly
                case F32, F16 -> assertEquals(w, got[i], 0, name + "[" + i + "]");
                case BF16 -> assertEquals(w, got[i], Math.scalb(1.0, Math.getExponent(w) - 8), name + "[" + i + "]");
            }
        }
        assertEquals(!permuted, identity, name);
    }

    /** convert_hf_to_gguf.py's permute spelled as its reshape: (heads, 2, hd/2) read as (heads, hd/2, 2). */
    private static int referenceSourceRow(int row) {
        int head = row / HEAD_DIM;
        int half = HEAD_DIM / 2;
        int pair = (row % HEAD_DIM) / 2;
        int which = row % 2;
        return head * HEAD_DIM + which * half + pair;
    }

    @Test
    void permutedQueriesAndKeysGiveHfAttentionScoresUnderInterleavedRope() throws Exception {
        Path model = tinyLlama("rope");
        Path out = tmp.resolve("rope.gguf");
        GgufConverter.convert(model, out, GgufType.F32, n -> { }, w -> { });
        GgufFile g = new GgufFile(out);
        SplittableRandom r = new SplittableRandom(3);
        double[] x = new double[HIDDEN];
        for (int i = 0; i < HIDDEN; i++) {
            x[i] = r.nextGaussian();
        }
        try (Checkpoint ckpt = Checkpoint.open(model)) {
            float[] wqHf = floats(ckpt.readF32("model.layers.0.self_attn.q_proj.weight"));
            float[] wkHf = floats(ckpt.readF32("model.layers.0.self_attn.k_proj.weight"));
            float[] wqG = g.data("blk.0.attn_q.weight");
            float[] wkG = g.data("blk.0.attn_k.weight");
            double worst = 0;
            double unpermutedWorst = 0;
            for (int[] pos : new int[][] {{0, 0}, {5, 2}, {17, 17}, {300, 41}}) {
                for (int h = 0; h < HEADS; h++) {
                    int kv = h / (HEADS / KV_HEADS);
                    double hf = dot(ropeHalves(head(wqHf, x, h), pos[0]), ropeHalves(head(wkHf, x, kv), pos[1]));
                    double gg = dot(ropePairs(head(wqG, x, h), pos[0]), ropePairs(head(wkG, x, kv), pos[1]));
                    double raw = dot(ropePairs(head(wqHf, x, h), pos[0]), ropePairs(head(wkHf, x, kv), pos[1]));
                    worst = Math.max(worst, Math.abs(hf - gg) / (1e-3 + Math.abs(hf)));
                    unpermutedWorst = Math.max(unpermutedWorst, Math.abs(hf - raw) / (1e-3 + Math.abs(hf)));
                }
            }
            assertTrue(worst < 1e-9, "scores agree, worst relative error " + worst);
            assertTrue(unpermutedWorst > 1e-2, "the check discriminates: unpermuted weights give other scores ("
                    + unpermutedWorst + ")");
        }
    }

    /** Head {@code h}'s projection of {@code x}: rows h·hd .. (h+1)·hd of the row-major (rows, HIDDEN) weight. */
    private static double[] head(float[] w, double[] x, int h) {
        double[] out = new double[HEAD_DIM];
        for (int i = 0; i < HEAD_DIM; i++) {
            for (int j = 0; j < HIDDEN; j++) {
                out[i] += w[(h * HEAD_DIM + i) * HIDDEN + j] * x[j];
            }
        }
        return out;
    }

    /** Hugging Face's RoPE: dimension i rotates with i + hd/2 (rotate_half). */
    private static double[] ropeHalves(double[] v, int pos) {
        int half = HEAD_DIM / 2;
        double[] out = new double[HEAD_DIM];
        for (int i = 0; i < half; i++) {
            double a = pos * Math.pow(THETA, -2.0 * i / HEAD_DIM);
            out[i] = v[i] * Math.cos(a) - v[i + half] * Math.sin(a);
            out[i + half] = v[i + half] * Math.cos(a) + v[i] * Math.sin(a);
        }
        return out;
    }

    /** llama.cpp's normal RoPE: dimension 2i rotates with 2i + 1. */
    private static double[] ropePairs(double[] v, int pos) {
        double[] out = new double[HEAD_DIM];
        for (int i = 0; i < HEAD_DIM / 2; i++) {
            double a = pos * Math.pow(THETA, -2.0 * i / HEAD_DIM);
            out[2 * i] = v[2 * i] * Math.cos(a) - v[2 * i + 1] * Math.sin(a);
            out[2 * i + 1] = v[2 * i] * Math.sin(a) + v[2 * i + 1] * Math.cos(a);
        }
        return out;
    }

    private static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            s += a[i] * b[i];
        }
        return s;
    }

    private static float[] floats(FloatBuffer b) {
        float[] f = new float[b.remaining()];
        b.duplicate().get(f);
        return f;
    }

    @Test
    void qwenFamiliesKeepHfOrderAndTheirBiasesAndNorms() throws Exception {
        for (String shape : List.of("qwen2.5-7b", "qwen3-8b")) {
            JsonObject c = SyntheticShapes.config(shape, 1);
            c.addProperty("hidden_size", HIDDEN);
            c.addProperty("intermediate_size", 48);
            c.addProperty("num_attention_heads", HEADS);
            c.addProperty("num_key_value_heads", KV_HEADS);
            c.addProperty("head_dim", HEAD_DIM);
            c.addProperty("vocab_size", 4096);
            Path dir = tmp.resolve(shape);
            SyntheticCheckpoint.write(c, Optional.empty(), new SyntheticModel(9), shipped(), dir, DType.F32, 1 << 30,
                    false);
            Path out = tmp.resolve(shape + ".gguf");
            List<String> warnings = new ArrayList<>();
            GgufConverter.convert(dir, out, GgufType.F32, n -> { }, warnings::add);
            GgufFile g = new GgufFile(out);
            String arch = shape.startsWith("qwen3") ? "qwen3" : "qwen2";
            assertEquals(arch, g.kv.get("general.architecture"));
            assertEquals((long) HEAD_DIM, g.kv.get(arch + ".attention.key_length"));
            try (Checkpoint ckpt = Checkpoint.open(dir)) {
                assertSame(GgufType.F32, ckpt, g, "blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight",
                        false);
                if (arch.equals("qwen2")) {
                    assertSame(GgufType.F32, ckpt, g, "blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias",
                            false);
                } else {
                    assertSame(GgufType.F32, ckpt, g, "blk.0.attn_q_norm.weight",
                            "model.layers.0.self_attn.q_norm.weight", false);
                    assertFalse(g.tensors.containsKey("blk.0.attn_q.bias"));
                }
            }
        }
    }

    @Test
    void whatTheConverterCannotRepresentFailsByName() throws Exception {
        JsonObject llama3 = SyntheticShapes.config("llama-3.1-8b", 1);
        llama3.addProperty("hidden_size", HIDDEN);
        llama3.addProperty("intermediate_size", 48);
        llama3.addProperty("num_attention_heads", HEADS);
        llama3.addProperty("num_key_value_heads", KV_HEADS);
        llama3.addProperty("vocab_size", 4096);
        Path dir = tmp.resolve("llama3");
        SyntheticCheckpoint.write(llama3, Optional.empty(), new SyntheticModel(1), shipped(), dir, DType.F32, 1 << 30,
                false);
        Path out = tmp.resolve("x.gguf");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> GgufConverter.convert(dir, out, GgufType.F32, n -> { }, w -> { }));
        assertTrue(e.getMessage().contains("llama3"), e.getMessage());

        Path small = tinyLlama("small-vocab");
        JsonObject config = JsonParser.parseString(Files.readString(small.resolve("config.json"))).getAsJsonObject();
        config.addProperty("vocab_size", 1000);
        Files.writeString(small.resolve("config.json"), config.toString());
        e = assertThrows(IllegalArgumentException.class,
                () -> GgufConverter.convert(small, out, GgufType.F32, n -> { }, w -> { }));
        assertTrue(e.getMessage().contains("outside the model's vocabulary of 1000"), e.getMessage());

        Path sp = tinyLlama("sentencepiece");
        String json = Files.readString(sp.resolve("tokenizer.json")).replace("\"byte_fallback\":false",
                "\"byte_fallback\":true").replace("\"byte_fallback\": false", "\"byte_fallback\": true");
        Files.writeString(sp.resolve("tokenizer.json"), json);
        e = assertThrows(IllegalArgumentException.class,
                () -> GgufConverter.convert(sp, out, GgufType.F32, n -> { }, w -> { }));
        assertTrue(e.getMessage().contains("byte_fallback"), e.getMessage());
        assertFalse(Files.exists(out), "nothing is written for a refused model");
    }

    @Test
    void bf16RoundsToNearestEvenAndKeepsNaN() {
        assertEquals((short) 0x3f80, SafetensorsWriter.toBf16(1.0f));
        // 1 + 2^-8 lies halfway between bf16 1.0 and 1.0078125: ties go to the even mantissa (1.0)
        assertEquals((short) 0x3f80, SafetensorsWriter.toBf16(Float.intBitsToFloat(0x3f808000)));
        // just above halfway rounds up
        assertEquals((short) 0x3f81, SafetensorsWriter.toBf16(Float.intBitsToFloat(0x3f808001)));
        // halfway from an odd mantissa rounds up to even
        assertEquals((short) 0x3f82, SafetensorsWriter.toBf16(Float.intBitsToFloat(0x3f818000)));
        assertTrue(Float.isNaN(Float.intBitsToFloat(SafetensorsWriter.toBf16(Float.NaN) << 16)));
        assertEquals((short) 0x7f80, SafetensorsWriter.toBf16(Float.POSITIVE_INFINITY));
    }

    @Test
    void aFailedWriteLeavesNoFile() {
        Path out = tmp.resolve("broken.gguf");
        GgufWriter w = new GgufWriter().putString("general.architecture", "llama");
        w.add(GgufWriter.Tensor.matrix("a", 2, 3, GgufType.F32, () -> FloatBuffer.wrap(new float[5]), r -> r));
        assertThrows(IllegalStateException.class, () -> w.write(out, n -> { }));
        assertFalse(Files.exists(out));
        assertThrows(IllegalArgumentException.class, () -> w.putU32("general.architecture", 1),
                "a key is written once");
    }
}
