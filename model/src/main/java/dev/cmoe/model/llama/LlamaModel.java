package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import dev.cmoe.model.config.ModelConfig;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * The LLaMA-family decoder (llama, mistral, qwen2) on DJL NDArrays, run as batched steps over
 * several sequences at once: every sequence contributes a chunk of new tokens (a prefill chunk or
 * one decode token) at its own position, and the step returns their logits. Projections and the
 * FFN see all tokens of the step as one matrix; only attention is per sequence, against that
 * sequence's {@link KvCache}.
 */
public final class LlamaModel implements AutoCloseable {
    private final ModelConfig config;
    private final NDManager manager;
    private final NDArray embed;    // (vocab, hidden)
    private final NDArray finalNorm; // (hidden)
    private final NDArray lmHeadT;  // (hidden, vocab)
    private final NDArray ropeCos;  // (maxPositions, headDim/2)
    private final NDArray ropeSin;  // (maxPositions, headDim/2)
    private final List<Layer> layers;

    /** One decoder layer's attention weights and its replaceable FFN. */
    private static final class Layer {
        NDArray attnNorm; // (hidden)
        NDArray wqT;      // (hidden, qDim)
        NDArray wkT;      // (hidden, kvDim)
        NDArray wvT;      // (hidden, kvDim)
        NDArray woT;      // (qDim, hidden)
        NDArray bq;       // (qDim) or null
        NDArray bk;       // (kvDim) or null
        NDArray bv;       // (kvDim) or null
        NDArray ffnNorm;  // (hidden)
        FeedForward ffn;
    }

    /** Builds the FFN of one layer; dense checkpoints use {@link DenseFeedForward#load}. */
    @FunctionalInterface
    public interface FeedForwardFactory {
        FeedForward create(NDManager manager, TensorSource source, int layer);
    }

    private LlamaModel(ModelConfig config, NDManager manager, TensorSource source, FeedForwardFactory ffns) {
        this.config = config;
        this.manager = manager;
        int d = config.hiddenSize();
        int vocab = config.vocabSize();
        embed = Tensors.load(manager, source, WeightNames.EMBED, vocab, d);
        finalNorm = Tensors.load(manager, source, WeightNames.FINAL_NORM, d);
        lmHeadT = config.tieWordEmbeddings()
                ? embed.transpose()
                : Tensors.transposedView(Tensors.load(manager, source, WeightNames.LM_HEAD, vocab, d));
        NDArray[] rope = Ops.ropeTables(manager, config.maxPositionEmbeddings(), config.headDim(), config.ropeTheta());
        ropeCos = rope[0];
        ropeSin = rope[1];
        layers = new ArrayList<>(config.numLayers());
        for (int i = 0; i < config.numLayers(); i++) {
            layers.add(loadLayer(source, ffns, i));
        }
    }

    /** Builds a model from {@code source}, with the FFN of each layer made by {@code ffns}. */
    public static LlamaModel create(ModelConfig config, TensorSource source, FeedForwardFactory ffns) {
        NDManager manager = NDManager.newBaseManager();
        try {
            return new LlamaModel(config, manager, source, ffns);
        } catch (RuntimeException e) {
            manager.close(); // nothing half-loaded survives a failed load
            throw e;
        }
    }

    /** Builds a dense model from {@code source}. */
    public static LlamaModel dense(ModelConfig config, TensorSource source) {
        return create(config, source, (m, s, layer) ->
                DenseFeedForward.load(m, s, layer, config.hiddenSize(), config.intermediateSize()));
    }

    private Layer loadLayer(TensorSource source, FeedForwardFactory ffns, int i) {
        String p = WeightNames.layer(i);
        int d = config.hiddenSize();
        int q = config.qDim();
        int kv = config.kvDim();
        Layer l = new Layer();
        l.attnNorm = Tensors.load(manager, source, p + "input_layernorm.weight", d);
        l.wqT = Tensors.transposedView(Tensors.load(manager, source, p + "self_attn.q_proj.weight", q, d));
        l.wkT = Tensors.transposedView(Tensors.load(manager, source, p + "self_attn.k_proj.weight", kv, d));
        l.wvT = Tensors.transposedView(Tensors.load(manager, source, p + "self_attn.v_proj.weight", kv, d));
        l.woT = Tensors.transposedView(Tensors.load(manager, source, p + "self_attn.o_proj.weight", d, q));
        if (config.attentionBias()) {
            l.bq = Tensors.load(manager, source, p + "self_attn.q_proj.bias", q);
            l.bk = Tensors.load(manager, source, p + "self_attn.k_proj.bias", kv);
            l.bv = Tensors.load(manager, source, p + "self_attn.v_proj.bias", kv);
        }
        l.ffnNorm = Tensors.load(manager, source, p + "post_attention_layernorm.weight", d);
        l.ffn = ffns.create(manager, source, i);
        return l;
    }

    public ModelConfig config() {
        return config;
    }

    /** The manager that owns the weights; FFN replacements may allocate their weights under it. */
    public NDManager manager() {
        return manager;
    }

    /** A fresh KV cache for one sequence of at most {@code maxLength} tokens. */
    public KvCache newCache(int maxLength) {
        if (maxLength > config.maxPositionEmbeddings()) {
            throw new IllegalArgumentException("sequence limit " + maxLength + " exceeds the model's context of "
                    + config.maxPositionEmbeddings() + " tokens");
        }
        return new KvCache(manager, config.numLayers(), config.numKvHeads(), config.headDim(),
                Math.min(maxLength, 64), maxLength);
    }

    /** The FFN block of layer {@code layer}. */
    public FeedForward feedForward(int layer) {
        return layers.get(layer).ffn;
    }

    /** Puts {@code ffn} in place of layer {@code layer}'s FFN and returns the previous one (not closed). */
    public FeedForward replaceFeedForward(int layer, FeedForward ffn) {
        FeedForward old = layers.get(layer).ffn;
        layers.get(layer).ffn = Objects.requireNonNull(ffn, "ffn");
        return old;
    }

    /**
     * Runs one batched step: appends each chunk's tokens to its cache and returns logits.
     * Temporaries live in an {@link NDScope} closed before returning; only the logits survive,
     * attached to {@code out}. If the step fails, no cache advances.
     *
     * @return LAST: (chunks, vocab); ALL: (total tokens, vocab)
     */
    public NDArray forward(List<SequenceChunk> batch, LogitsMode mode, NDManager out) {
        if (batch.isEmpty()) {
            throw new IllegalArgumentException("a step needs at least one sequence");
        }
        int total = 0;
        for (SequenceChunk c : batch) {
            c.cache().reserve(c.tokens().length);
            total += c.tokens().length;
        }
        long[] ids = new long[total];
        long[] positions = new long[total];
        long[] lastRows = new long[batch.size()];
        int row = 0;
        for (int b = 0; b < batch.size(); b++) {
            SequenceChunk c = batch.get(b);
            for (int t = 0; t < c.tokens().length; t++, row++) {
                int id = c.tokens()[t];
                if (id < 0 || id >= config.vocabSize()) {
                    throw new IllegalArgumentException("token id " + id + " outside the vocabulary of "
                            + config.vocabSize());
                }
                ids[row] = id;
                positions[row] = c.cache().length() + t;
            }
            lastRows[b] = row - 1;
        }
        NDArray logits;
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            NDManager step = embed.getManager();
            NDArray x = embed.get(new NDIndex("{}", step.create(ids))); // (T, hidden)
            NDArray pos = step.create(positions);
            NDArray cos = ropeCos.get(new NDIndex("{}", pos)).expandDims(1); // (T, 1, headDim/2)
            NDArray sin = ropeSin.get(new NDIndex("{}", pos)).expandDims(1);
            NDArray[] masks = masks(step, batch);
            for (int l = 0; l < layers.size(); l++) {
                x = layer(l, x, cos, sin, masks, batch);
            }
            NDArray h = Ops.rmsNorm(x, finalNorm, config.rmsNormEps());
            if (mode == LogitsMode.LAST) {
                h = h.get(new NDIndex("{}", step.create(lastRows)));
            }
            logits = h.matMul(lmHeadT);
            NDScope.unregister(logits);
        }
        logits.attach(out);
        for (SequenceChunk c : batch) {
            c.cache().advance(c.tokens().length);
        }
        return logits;
    }

    /**
     * The residual stream entering layer 0 for whole windows: their token embeddings,
     * (windows·seqlen, hidden), attached to {@code out}. With {@link #forwardLayer} it lets a
     * caller walk the model one layer at a time and change a layer before moving past it.
     */
    public NDArray embedWindows(int[][] windows, NDManager out) {
        int seqlen = windows[0].length;
        long[] ids = new long[windows.length * seqlen];
        for (int w = 0; w < windows.length; w++) {
            if (windows[w].length != seqlen) {
                throw new IllegalArgumentException("windows must all have " + seqlen + " tokens, window " + w
                        + " has " + windows[w].length);
            }
            for (int t = 0; t < seqlen; t++) {
                int id = windows[w][t];
                if (id < 0 || id >= config.vocabSize()) {
                    throw new IllegalArgumentException("token id " + id + " outside the vocabulary of "
                            + config.vocabSize());
                }
                ids[w * seqlen + t] = id;
            }
        }
        try (NDManager tmp = embed.getManager().newSubManager()) {
            NDArray x = embed.get(new NDIndex("{}", tmp.create(ids)));
            x.attach(out);
            return x;
        }
    }

    /**
     * Runs decoder layer {@code l}, with whatever FFN it holds now, over whole windows that start
     * at position 0: x is (windows·seqlen, hidden) and so is the result, attached to {@code out}.
     * The code path is the step's own (scratch caches, causal masks), so walking the layers this
     * way gives what {@link #forward} computes inside.
     */
    public NDArray forwardLayer(int l, NDArray x, int windows, int seqlen, NDManager out) {
        if (x.getShape().get(0) != (long) windows * seqlen) {
            throw new IllegalArgumentException("x has " + x.getShape().get(0) + " rows, not " + windows + " windows of "
                    + seqlen);
        }
        List<SequenceChunk> batch = new ArrayList<>(windows);
        int[] placeholder = new int[seqlen]; // only the chunk length matters to a layer
        try {
            for (int w = 0; w < windows; w++) {
                KvCache cache = newCache(seqlen);
                cache.reserve(seqlen);
                batch.add(new SequenceChunk(cache, placeholder));
            }
            NDArray y;
            try (NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                NDManager step = embed.getManager();
                long[] positions = new long[windows * seqlen];
                for (int i = 0; i < positions.length; i++) {
                    positions[i] = i % seqlen;
                }
                NDArray pos = step.create(positions);
                NDArray cos = ropeCos.get(new NDIndex("{}", pos)).expandDims(1);
                NDArray sin = ropeSin.get(new NDIndex("{}", pos)).expandDims(1);
                y = layer(l, x, cos, sin, masks(step, batch), batch);
                NDScope.unregister(y);
            }
            y.attach(out);
            return y;
        } finally {
            batch.forEach(c -> c.cache().close());
        }
    }

    /** One decoder layer over all tokens of the step. x: (T, hidden) → (T, hidden). */
    private NDArray layer(int l, NDArray x, NDArray cos, NDArray sin, NDArray[] masks, List<SequenceChunk> batch) {
        Layer w = layers.get(l);
        long tokens = x.getShape().get(0);
        int heads = config.numHeads();
        int kvHeads = config.numKvHeads();
        int headDim = config.headDim();
        // attention: project, rotate, attend per sequence against its cache, project back
        NDArray h = Ops.rmsNorm(x, w.attnNorm, config.rmsNormEps());
        NDArray q = linear(h, w.wqT, w.bq).reshape(tokens, heads, headDim);
        NDArray k = linear(h, w.wkT, w.bk).reshape(tokens, kvHeads, headDim);
        NDArray v = linear(h, w.wvT, w.bv).reshape(tokens, kvHeads, headDim);
        q = Ops.rope(q, cos, sin);
        k = Ops.rope(k, cos, sin);
        NDList outs = new NDList(batch.size());
        int start = 0;
        for (int b = 0; b < batch.size(); b++) {
            SequenceChunk c = batch.get(b);
            int n = c.tokens().length;
            NDIndex rows = new NDIndex("{}:{}", start, start + n);
            NDArray[] kv = c.cache().append(l, k.get(rows), v.get(rows));
            outs.add(Ops.attention(q.get(rows), kv[0], kv[1], masks[b]));
            start += n;
        }
        NDArray attn = outs.size() == 1 ? outs.head() : NDArrays.concat(outs);
        x = x.add(attn.matMul(w.woT));
        // feed-forward: dense SwiGLU or the carved mixture of experts
        return x.add(w.ffn.forward(Ops.rmsNorm(x, w.ffnNorm, config.rmsNormEps())));
    }

    private static NDArray linear(NDArray x, NDArray wT, NDArray bias) {
        NDArray y = x.matMul(wT);
        return bias == null ? y : y.add(bias);
    }

    /** Per sequence, the additive mask for its chunk, or null for a single decode token with no window limit. */
    private NDArray[] masks(NDManager step, List<SequenceChunk> batch) {
        NDArray[] masks = new NDArray[batch.size()];
        int window = config.slidingWindow();
        for (int b = 0; b < batch.size(); b++) {
            SequenceChunk c = batch.get(b);
            int past = c.cache().length();
            int n = c.tokens().length;
            boolean windowBites = window > 0 && past + n > window;
            if (n > 1 || windowBites) {
                masks[b] = Ops.causalMask(step, past, n, window);
            }
        }
        return masks;
    }

    @Override
    public void close() {
        for (Layer l : layers) {
            l.ffn.close();
        }
        manager.close();
    }
}
