package dev.cmoe.deploy.gguf;

import dev.cmoe.model.arch.RopeScaling;
import dev.cmoe.model.arch.TensorNames;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.safetensors.Checkpoint;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;
import java.util.function.IntUnaryOperator;

/**
 * A dense Hugging Face checkpoint (config.json, safetensors, byte-level BPE tokenizer.json) as a
 * GGUF file llama.cpp loads, with the same weights: tensor names and metadata keys as
 * {@code convert_hf_to_gguf.py} writes them, matrices in the requested type, vectors (norms,
 * biases) in float32 as it keeps them.
 */
public final class GgufConverter {
    private GgufConverter() {
    }

    /** What the conversion produced, for the command's summary line. */
    public record Result(String architecture, int tensors, long bytes) {
    }

    /**
     * Converts the model in {@code dir} to {@code out} with matrices of {@code type}; {@code progress}
     * hears each tensor name as it is written, {@code warn} anything llama.cpp will run differently.
     *
     * @throws IllegalArgumentException naming what the converter does not handle (a carved model, a
     *     RoPE scaling llama.cpp's graph would not reproduce, a non-byte-level tokenizer)
     */
    public static Result convert(Path dir, Path out, GgufType type, Consumer<String> progress, Consumer<String> warn) {
        ModelConfig c = ModelConfig.load(dir);
        if (MoeConfig.of(c).isPresent()) {
            throw new IllegalArgumentException(dir + " is a carved (CMoE) model; only dense checkpoints convert to GGUF");
        }
        String arch = switch (c.modelType()) {
            case "llama", "mistral" -> "llama";
            case "qwen2" -> "qwen2";
            case "qwen3" -> "qwen3";
            default -> throw new IllegalArgumentException("model_type '" + c.modelType() + "' has no GGUF mapping");
        };
        // llama.cpp's llama graph uses adjacent-pair RoPE, its qwen graphs NeoX (HF's) order
        boolean permute = arch.equals("llama");
        if (c.slidingWindow() > 0) {
            warn.accept("the sliding window of " + c.slidingWindow() + " tokens is not written: llama.cpp's " + arch
                    + " graph attends over the whole context, so outputs differ past that many tokens");
        }
        GgufVocab vocab = GgufVocab.read(dir, c.vocabSize());
        GgufWriter w = new GgufWriter();
        metadata(w, c, arch, type, dir);
        tokenizer(w, c, vocab);
        try (Checkpoint ckpt = Checkpoint.open(dir)) {
            int d = c.hiddenSize();
            int v = c.vocabSize();
            matrix(w, ckpt, "token_embd.weight", TensorNames.EMBED, v, d, type, null);
            for (int l = 0; l < c.numLayers(); l++) {
                String blk = "blk." + l + ".";
                IntUnaryOperator rope = permute ? r -> RotaryPermutation.sourceRow(r, c.headDim()) : null;
                vector(w, ckpt, blk + "attn_norm.weight", TensorNames.of(l, TensorNames.ATTN_NORM), d);
                matrix(w, ckpt, blk + "attn_q.weight", TensorNames.weight(l, TensorNames.Q), c.qDim(), d, type, rope);
                matrix(w, ckpt, blk + "attn_k.weight", TensorNames.weight(l, TensorNames.K), c.kvDim(), d, type, rope);
                matrix(w, ckpt, blk + "attn_v.weight", TensorNames.weight(l, TensorNames.V), c.kvDim(), d, type, null);
                if (c.attentionBias()) {
                    vector(w, ckpt, blk + "attn_q.bias", TensorNames.bias(l, TensorNames.Q), c.qDim(), rope);
                    vector(w, ckpt, blk + "attn_k.bias", TensorNames.bias(l, TensorNames.K), c.kvDim(), rope);
                    vector(w, ckpt, blk + "attn_v.bias", TensorNames.bias(l, TensorNames.V), c.kvDim(), null);
                }
                matrix(w, ckpt, blk + "attn_output.weight", TensorNames.weight(l, TensorNames.O), d, c.qDim(), type,
                        null);
                if (c.outputBias()) {
                    vector(w, ckpt, blk + "attn_output.bias", TensorNames.bias(l, TensorNames.O), d);
                }
                if (c.qkNorm()) {
                    vector(w, ckpt, blk + "attn_q_norm.weight", TensorNames.of(l, TensorNames.Q_NORM), c.headDim());
                    vector(w, ckpt, blk + "attn_k_norm.weight", TensorNames.of(l, TensorNames.K_NORM), c.headDim());
                }
                vector(w, ckpt, blk + "ffn_norm.weight", TensorNames.of(l, TensorNames.FFN_NORM), d);
                int ff = c.intermediateSize();
                matrix(w, ckpt, blk + "ffn_gate.weight", TensorNames.weight(l, TensorNames.GATE), ff, d, type, null);
                matrix(w, ckpt, blk + "ffn_up.weight", TensorNames.weight(l, TensorNames.UP), ff, d, type, null);
                matrix(w, ckpt, blk + "ffn_down.weight", TensorNames.weight(l, TensorNames.DOWN), d, ff, type, null);
            }
            vector(w, ckpt, "output_norm.weight", TensorNames.FINAL_NORM, d);
            if (!c.tieWordEmbeddings()) {
                matrix(w, ckpt, "output.weight", TensorNames.LM_HEAD, v, d, type, null);
            } // tied: llama.cpp reuses token_embd when output.weight is absent
            int count = w.tensorCount();
            w.write(out, progress);
            return new Result(arch, count, Files.size(out));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the size of " + out + ": " + e.getMessage(), e);
        }
    }

    private static void metadata(GgufWriter w, ModelConfig c, String arch, GgufType type, Path dir) {
        Path name = dir.toAbsolutePath().normalize().getFileName();
        w.putString("general.architecture", arch)
                .putString("general.name", name == null ? arch : name.toString())
                .putU32("general.file_type", type.fileType())
                .putU32(arch + ".vocab_size", c.vocabSize())
                .putU32(arch + ".context_length", c.maxPositionEmbeddings())
                .putU32(arch + ".embedding_length", c.hiddenSize())
                .putU32(arch + ".feed_forward_length", c.intermediateSize())
                .putU32(arch + ".block_count", c.numLayers())
                .putU32(arch + ".attention.head_count", c.numHeads())
                .putU32(arch + ".attention.head_count_kv", c.numKvHeads())
                .putU32(arch + ".attention.key_length", c.headDim())
                .putU32(arch + ".attention.value_length", c.headDim())
                .putU32(arch + ".rope.dimension_count", c.headDim())
                .putF32(arch + ".rope.freq_base", c.ropeTheta())
                .putF32(arch + ".attention.layer_norm_rms_epsilon", c.rmsNormEps());
        RopeScaling s = c.ropeScaling();
        switch (s.type()) {
            case NONE -> {
            }
            case LINEAR -> w.putString(arch + ".rope.scaling.type", "linear")
                    .putF32(arch + ".rope.scaling.factor", s.factor());
            default -> throw new IllegalArgumentException("rope_scaling '" + s.type().configName()
                    + "' is not converted to GGUF (only none and linear)");
        }
    }

    private static void tokenizer(GgufWriter w, ModelConfig c, GgufVocab vocab) {
        w.putString("tokenizer.ggml.model", "gpt2")
                .putString("tokenizer.ggml.pre", "gpt-2")
                .putStrings("tokenizer.ggml.tokens", vocab.tokens())
                .putInts("tokenizer.ggml.token_type", vocab.types())
                .putStrings("tokenizer.ggml.merges", vocab.merges());
        if (c.bosTokenId() >= 0) {
            w.putU32("tokenizer.ggml.bos_token_id", c.bosTokenId());
        }
        if (c.eosTokenId() >= 0) {
            w.putU32("tokenizer.ggml.eos_token_id", c.eosTokenId());
        }
        vocab.addBos().ifPresent(b -> w.putBool("tokenizer.ggml.add_bos_token", b));
    }

    private static void matrix(GgufWriter w, Checkpoint ckpt, String name, String source, int rows, int cols,
                               GgufType type, IntUnaryOperator rowOrder) {
        ckpt.require(source, rows, cols);
        w.add(GgufWriter.Tensor.matrix(name, rows, cols, type, () -> ckpt.readF32(source),
                rowOrder == null ? r -> r : rowOrder));
    }

    private static void vector(GgufWriter w, Checkpoint ckpt, String name, String source, int n) {
        vector(w, ckpt, name, source, n, null);
    }

    private static void vector(GgufWriter w, Checkpoint ckpt, String name, String source, int n,
                               IntUnaryOperator order) {
        ckpt.require(source, n);
        w.add(GgufWriter.Tensor.vector(name, n, () -> ckpt.readF32(source), order == null ? r -> r : order));
    }
}
