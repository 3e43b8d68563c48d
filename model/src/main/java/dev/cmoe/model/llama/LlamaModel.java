package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.pytorch.jni.IValue;
import dev.cmoe.model.arch.TensorNames;
import dev.cmoe.model.config.ModelConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * The one LLaMA-family decoder (llama, mistral, qwen2, qwen3) on DJL NDArrays, for inference,
 * carving calibration, pretraining and adaptation alike. Inference runs batched steps over
 * several sequences at once: every sequence contributes a chunk of new tokens (a prefill chunk or
 * one decode token) at its own position, and the step returns their logits. Projections and the
 * FFN see all tokens of the step as one matrix; only attention is per sequence, against that
 * sequence's {@link KvCache}. Training runs the same layers over whole windows without a cache
 * ({@link #windowLogits}); what it trains is decided by the {@link DecoderWeights} the model was
 * built from and by its FFNs, not by a copy of the layer.
 */
public final class LlamaModel implements AutoCloseable {
    private final ModelConfig config;
    private final NDManager manager;
    private final NDArray embed;     // (vocab, hidden), in the kernels' dtype
    private final WeightKernels kernels;
    private final NDArray finalNorm; // (hidden)
    private final Linear lmHead;     // hidden → vocab
    private final Rotary rotary;
    private final List<Layer> layers; // an entry is null while a layerwise model's layer is not loaded
    private final FeedForwardFactory layerFfns;  // layerwise only: how loadLayer builds a layer's FFN
    private final TensorSource layerSource;      // layerwise only: where loadLayer reads it from
    private LayerScript script;                  // made when the first frozen layer loads
    private final long splitBytes;               // the script's threshold for products in halves
    private final IValue headScript;             // the LM head's weights as the script's list, when frozen
    private volatile boolean scripted = !"false".equals(System.getProperty("cmoe.decoder.script"));

    /** One decoder layer's attention weights and its replaceable FFN. */
    private static final class Layer {
        NDManager own;    // a layerwise model's per-layer manager, or null (the model's manager holds it)
        NDArray attnNorm; // (hidden)
        Linear q;         // hidden → qDim (+ bias)
        Linear k;         // hidden → kvDim
        Linear v;         // hidden → kvDim
        Linear o;         // qDim → hidden
        NDArray qNorm;    // (headDim) or null
        NDArray kNorm;    // (headDim) or null
        NDArray ffnNorm;  // (hidden)
        FeedForward ffn;
        IValue attnScript; // the attention weights as the script's list, when they are all frozen
        IValue ffnScript;  // the FFN's, when it is a frozen dense SwiGLU

        void closeScripts() {
            if (attnScript != null) {
                attnScript.close();
                attnScript = null;
            }
            closeFfnScript();
        }

        void closeFfnScript() {
            if (ffnScript != null) {
                ffnScript.close();
                ffnScript = null;
            }
        }
    }

    /** Builds the FFN of one layer from the model's weights; dense checkpoints use {@link DenseFeedForward#load}. */
    @FunctionalInterface
    public interface FeedForwardFactory {
        FeedForward create(DecoderWeights weights, int layer);
    }

    /** Attention of a step's rows for one layer: q (T, heads, headDim), k/v (T, kvHeads, headDim) → (T, qDim). */
    @FunctionalInterface
    private interface Attend {
        NDArray apply(int layer, NDArray q, NDArray k, NDArray v);
    }

    private LlamaModel(ModelConfig config, DecoderWeights weights, FeedForwardFactory ffns, boolean layerwise,
                       long splitBytes) {
        this.config = config;
        this.splitBytes = splitBytes;
        this.manager = weights.manager();
        int d = config.hiddenSize();
        int vocab = config.vocabSize();
        kernels = weights.kernels();
        embed = weights.table(TensorNames.EMBED, vocab, d);
        finalNorm = weights.tensor(TensorNames.FINAL_NORM, d);
        lmHead = config.tieWordEmbeddings() ? weights.tied(embed)
                : weights.linear(TensorNames.LM_HEAD, null, vocab, d);
        rotary = new Rotary(config, manager);
        Linear.Frozen head = frozen(lmHead);
        headScript = head != null ? script().headWeights(head) : null;
        layers = new ArrayList<>(config.numLayers());
        layerFfns = layerwise ? ffns : null;
        layerSource = layerwise ? weights.source() : null;
        for (int i = 0; i < config.numLayers(); i++) {
            layers.add(layerwise ? null : loadLayer(weights, ffns, i));
        }
    }

    /** Builds an inference model from {@code source}, with the FFN of each layer made by {@code ffns}. */
    public static LlamaModel create(ModelConfig config, TensorSource source, FeedForwardFactory ffns) {
        return create(config, DecoderWeights.frozen(NDManager.newBaseManager(), source), ffns);
    }

    /** {@link #create(ModelConfig, DecoderWeights, FeedForwardFactory)} whose script splits products from {@code splitBytes} on. */
    static LlamaModel create(ModelConfig config, DecoderWeights weights, FeedForwardFactory ffns, long splitBytes) {
        try {
            return new LlamaModel(config, weights, ffns, false, splitBytes);
        } catch (RuntimeException e) {
            weights.manager().close();
            throw e;
        }
    }

    /** Builds a model whose tensors {@code weights} makes; the model owns {@code weights.manager()} from now on. */
    public static LlamaModel create(ModelConfig config, DecoderWeights weights, FeedForwardFactory ffns) {
        try {
            return new LlamaModel(config, weights, ffns, false, LayerScript.SPLIT_BYTES);
        } catch (RuntimeException e) {
            weights.manager().close(); // nothing half-loaded survives a failed load
            throw e;
        }
    }

    /**
     * A frozen model of which only the embedding, the final norm and the head are loaded now: a
     * decoder layer is loaded by {@link #loadLayer} and freed by {@link #releaseLayer}, so a caller
     * that walks the layers one at a time ({@link #forwardLayer}) holds one layer's weights, not
     * the model's. {@code source} must stay readable until the last layer is loaded; the model owns
     * {@code manager}.
     */
    public static LlamaModel layerwise(ModelConfig config, NDManager manager, TensorSource source,
                                       WeightKernels kernels, FeedForwardFactory ffns) {
        try {
            return new LlamaModel(config, DecoderWeights.frozen(manager, source, kernels), ffns, true,
                    LayerScript.SPLIT_BYTES);
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    /** Whether this model was made by {@link #layerwise}: its layers are loaded and freed one by one. */
    public boolean isLayerwise() {
        return layerSource != null;
    }

    /** Loads decoder layer {@code l} of a {@link #layerwise} model into a manager of its own. */
    public void loadLayer(int l) {
        loadLayer(l, layerFfns);
    }

    /**
     * As {@link #loadLayer(int)}, its FFN built by {@code ffns} instead of the model's factory: a
     * carve that passes through a layer it has already carved builds the carved FFN, and never
     * reads the dense one.
     */
    public void loadLayer(int l, FeedForwardFactory ffns) {
        if (!isLayerwise()) {
            throw new IllegalStateException("every layer of this model is loaded with it; only a layerwise model loads layers");
        }
        if (layers.get(l) != null) {
            throw new IllegalStateException("layer " + l + " is already loaded");
        }
        NDManager own = manager.newSubManager();
        try {
            Layer layer = loadLayer(DecoderWeights.frozen(own, layerSource, kernels), ffns, l);
            layer.own = own;
            layers.set(l, layer);
        } catch (RuntimeException e) {
            own.close();
            throw e;
        }
    }

    /** Frees layer {@code l} of a {@link #layerwise} model: its FFN and every tensor of its manager. */
    public void releaseLayer(int l) {
        Layer layer = loaded(l);
        if (layer.own == null) {
            throw new IllegalStateException("layer " + l + " belongs to the model; only a layerwise model releases layers");
        }
        layers.set(l, null);
        try {
            layer.closeScripts();
            layer.ffn.close();
        } finally {
            layer.own.close();
        }
    }

    /**
     * The manager that holds layer {@code l}'s weights: an FFN put in its place should live there,
     * so that it goes when the layer does.
     */
    public NDManager layerManager(int l) {
        Layer layer = loaded(l);
        return layer.own != null ? layer.own : manager;
    }

    private Layer loaded(int l) {
        Layer layer = layers.get(l);
        if (layer == null) {
            throw new IllegalStateException("layer " + l + " is not loaded (call loadLayer first)");
        }
        return layer;
    }

    /** Builds a dense inference model from {@code source}. */
    public static LlamaModel dense(ModelConfig config, TensorSource source) {
        return create(config, source, denseFeedForwards(config));
    }

    /** The dense SwiGLU of every layer, as the weights make it. */
    public static FeedForwardFactory denseFeedForwards(ModelConfig config) {
        return (w, layer) -> DenseFeedForward.load(w, layer, config.hiddenSize(), config.intermediateSize());
    }

    private Layer loadLayer(DecoderWeights w, FeedForwardFactory ffns, int i) {
        int d = config.hiddenSize();
        int q = config.qDim();
        int kv = config.kvDim();
        boolean qkvBias = config.attentionBias();
        Layer l = new Layer();
        l.attnNorm = w.tensor(TensorNames.of(i, TensorNames.ATTN_NORM), d);
        l.q = w.linear(TensorNames.weight(i, TensorNames.Q), qkvBias ? TensorNames.bias(i, TensorNames.Q) : null, q, d);
        l.k = w.linear(TensorNames.weight(i, TensorNames.K), qkvBias ? TensorNames.bias(i, TensorNames.K) : null, kv, d);
        l.v = w.linear(TensorNames.weight(i, TensorNames.V), qkvBias ? TensorNames.bias(i, TensorNames.V) : null, kv, d);
        l.o = w.linear(TensorNames.weight(i, TensorNames.O),
                config.outputBias() ? TensorNames.bias(i, TensorNames.O) : null, d, q);
        if (config.qkNorm()) {
            l.qNorm = w.tensor(TensorNames.of(i, TensorNames.Q_NORM), config.headDim());
            l.kNorm = w.tensor(TensorNames.of(i, TensorNames.K_NORM), config.headDim());
        }
        l.ffnNorm = w.tensor(TensorNames.of(i, TensorNames.FFN_NORM), d);
        l.ffn = ffns.create(w, i);
        Linear.Frozen fq = frozen(l.q);
        Linear.Frozen fk = frozen(l.k);
        Linear.Frozen fv = frozen(l.v);
        Linear.Frozen fo = frozen(l.o);
        if (fq != null && fk != null && fv != null && fo != null) {
            l.attnScript = script().attentionWeights(l.attnNorm, fq, fk, fv, fo, l.qNorm, l.kNorm);
        }
        bindFeedForwardScript(l);
        return l;
    }

    /** {@code p} as an inference projection in this model's dtype, or null when training holds it. */
    private Linear.Frozen frozen(Linear p) {
        return p instanceof Linear.Frozen f && f.kernels() == kernels ? f : null;
    }

    private LayerScript script() {
        if (script == null) {
            script = LayerScript.of(config, kernels.dtype(), splitBytes);
        }
        return script;
    }

    /** Gives the script layer {@code l}'s FFN weights when the FFN is a frozen dense SwiGLU. */
    private void bindFeedForwardScript(Layer l) {
        l.closeFfnScript();
        if (l.ffn instanceof DenseFeedForward dense) {
            Linear[] p = dense.projections();
            Linear.Frozen gate = frozen(p[0]);
            Linear.Frozen up = frozen(p[1]);
            Linear.Frozen down = frozen(p[2]);
            if (gate != null && up != null && down != null) {
                l.ffnScript = script().feedForwardWeights(l.ffnNorm, gate, up, down);
            }
        }
    }

    /**
     * Whether cached steps of frozen layers run as the layer script (the default; the system
     * property {@code cmoe.decoder.script=false} starts models without it) or as the Java
     * operations the script mirrors, which benchmarks compare side by side on the same weights.
     */
    public void setScripted(boolean scripted) {
        this.scripted = scripted;
    }

    /** Which parts of layer {@code l} the script runs in a cached step: {attention, FFN}. */
    boolean[] scriptedParts(int l) {
        Layer w = loaded(l);
        boolean on = scripted && script != null;
        return new boolean[] {on && w.attnScript != null, on && w.ffnScript != null};
    }

    public ModelConfig config() {
        return config;
    }

    /** How this model's projection weights are held; FFN replacements hold theirs the same way. */
    public WeightKernels kernels() {
        return kernels;
    }

    /** The manager that owns the weights; FFN replacements may allocate their weights under it. */
    public NDManager manager() {
        return manager;
    }

    /** A fresh KV cache for one sequence of at most {@code maxLength} tokens. */
    public KvCache newCache(int maxLength) {
        if (maxLength > config.contextLength()) {
            throw new IllegalArgumentException("sequence limit " + maxLength + " exceeds the model's context of "
                    + config.contextLength() + " tokens");
        }
        return new KvCache(manager, config.numLayers(), config.numKvHeads(), config.headDim(),
                Math.min(maxLength, 64), maxLength);
    }

    /** The FFN block of layer {@code layer}. */
    public FeedForward feedForward(int layer) {
        return loaded(layer).ffn;
    }

    /** Puts {@code ffn} in place of layer {@code layer}'s FFN and returns the previous one (not closed). */
    public FeedForward replaceFeedForward(int layer, FeedForward ffn) {
        Layer l = loaded(layer);
        FeedForward old = l.ffn;
        l.ffn = Objects.requireNonNull(ffn, "ffn");
        bindFeedForwardScript(l);
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
        int[] seqLens = new int[total];
        long[] lastRows = new long[batch.size()];
        int row = 0;
        for (int b = 0; b < batch.size(); b++) {
            SequenceChunk c = batch.get(b);
            int end = c.cache().length() + c.tokens().length;
            for (int t = 0; t < c.tokens().length; t++, row++) {
                ids[row] = checkedId(c.tokens()[t]);
                positions[row] = (long) c.cache().length() + t;
                seqLens[row] = end;
            }
            lastRows[b] = row - 1L;
        }
        NDArray logits;
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            NDManager step = embed.getManager();
            NDArray x = kernels.rows(embed, step.create(ids)); // (T, hidden)
            NDArray[] rope = rotary.rows(step, positions, seqLens);     // (T, 1, headDim/2) each
            Attend attend = cached(step, batch);
            try (LayerScript.Step scriptStep = scriptStep(rope, batch)) {
                for (int l = 0; l < layers.size(); l++) {
                    x = layer(l, x, rope, attend, scriptStep);
                }
                NDArray h = scriptStep != null ? script.norm(x, finalNorm)
                        : Ops.rmsNorm(x, finalNorm, config.rmsNormEps());
                if (mode == LogitsMode.LAST) {
                    h = h.get(new NDIndex("{}", step.create(lastRows)));
                }
                logits = scriptStep != null && headScript != null ? script.head(h, headScript, scriptStep)
                        : lmHead.apply(h);
            }
            NDScope.unregister(logits);
        }
        logits.attach(out);
        for (SequenceChunk c : batch) {
            c.cache().advance(c.tokens().length);
        }
        return logits;
    }

    /**
     * Logits of every position of whole windows that start at position 0, with no cache: the
     * training forward. Nothing is scoped or detached, so autograd sees the whole graph; the
     * caller's scope releases it.
     *
     * @param ids (batch, time) int64
     * @return (batch, time, vocab)
     */
    public NDArray windowLogits(NDArray ids) {
        long b = ids.getShape().get(0);
        int t = Math.toIntExact(ids.getShape().get(1));
        if (t > config.contextLength()) {
            throw new IllegalArgumentException("sequence of " + t + " tokens exceeds the context of "
                    + config.contextLength());
        }
        NDManager m = ids.getManager();
        long[] positions = new long[Math.toIntExact(b * t)];
        for (int i = 0; i < positions.length; i++) {
            positions[i] = i % t;
        }
        int[] seqLens = new int[positions.length];
        Arrays.fill(seqLens, t);
        NDArray[] rope = rotary.rows(m, positions, seqLens);
        NDArray[] masks = new NDArray[2]; // [full, windowed], made when a layer first needs one
        NDArray x = kernels.rows(embed, ids.reshape(b * t)).reshape(b * t, config.hiddenSize());
        Attend attend = (l, q, k, v) -> {
            int window = config.slidingWindow(l);
            int slot = window == 0 ? 0 : 1;
            if (masks[slot] == null) {
                masks[slot] = Ops.causalMask(m, 0, t, window);
            }
            NDArray out = Ops.causalSelfAttention(q.reshape(b, t, config.numHeads(), config.headDim()),
                    k.reshape(b, t, config.numKvHeads(), config.headDim()),
                    v.reshape(b, t, config.numKvHeads(), config.headDim()), masks[slot]);
            return out.reshape(b * t, config.qDim());
        };
        for (int l = 0; l < layers.size(); l++) {
            x = layer(l, x, rope, attend, null);
        }
        return lmHead.apply(Ops.rmsNorm(x, finalNorm, config.rmsNormEps())).reshape(b, t, config.vocabSize());
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
                ids[w * seqlen + t] = checkedId(windows[w][t]);
            }
        }
        try (NDManager tmp = embed.getManager().newSubManager()) {
            NDArray x = kernels.rows(embed, tmp.create(ids));
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
                int[] seqLens = new int[positions.length];
                for (int i = 0; i < positions.length; i++) {
                    positions[i] = i % seqlen;
                    seqLens[i] = seqlen;
                }
                NDArray[] rope = rotary.rows(step, positions, seqLens);
                try (LayerScript.Step scriptStep = scriptStep(rope, batch)) {
                    y = layer(l, x, rope, cached(step, batch), scriptStep);
                }
                NDScope.unregister(y);
            }
            y.attach(out);
            return y;
        } finally {
            batch.forEach(c -> c.cache().close());
        }
    }

    /** What the layer script needs of a cached step, or null when this model's steps run the Java operations. */
    private LayerScript.Step scriptStep(NDArray[] rope, List<SequenceChunk> batch) {
        return scripted && script != null ? new LayerScript.Step(rope[0], rope[1], batch) : null;
    }

    /**
     * One decoder layer over all rows of the step. x: (T, hidden) → (T, hidden). With a script
     * step (cached steps only), the frozen parts of the layer run as the script.
     */
    private NDArray layer(int l, NDArray x, NDArray[] rope, Attend attend, LayerScript.Step scriptStep) {
        Layer w = loaded(l);
        if (scriptStep != null) {
            if (w.attnScript != null) {
                x = script.attention(x, w.attnScript, scriptStep, l);
            } else {
                x = attention(w, l, x, rope, attend);
            }
            return w.ffnScript != null ? script.feedForward(x, w.ffnScript, scriptStep)
                    : w.ffn.addTo(x, script.norm(x, w.ffnNorm), script);
        }
        x = attention(w, l, x, rope, attend);
        // feed-forward: dense SwiGLU or the carved mixture of experts
        return x.add(w.ffn.forward(Ops.rmsNorm(x, w.ffnNorm, config.rmsNormEps())));
    }

    /** The attention half of a layer with its residual: x + o(attention(q, k, v)). */
    private NDArray attention(Layer w, int l, NDArray x, NDArray[] rope, Attend attend) {
        long tokens = x.getShape().get(0);
        int headDim = config.headDim();
        // attention: project, (normalise heads,) rotate, attend, project back
        NDArray h = Ops.rmsNorm(x, w.attnNorm, config.rmsNormEps());
        NDArray q = w.q.apply(h).reshape(tokens, config.numHeads(), headDim);
        NDArray k = w.k.apply(h).reshape(tokens, config.numKvHeads(), headDim);
        NDArray v = w.v.apply(h).reshape(tokens, config.numKvHeads(), headDim);
        if (w.qNorm != null) {
            q = Ops.rmsNorm(q, w.qNorm, config.rmsNormEps());
            k = Ops.rmsNorm(k, w.kNorm, config.rmsNormEps());
        }
        q = Ops.rope(q, rope[0], rope[1]);
        k = Ops.rope(k, rope[0], rope[1]);
        return x.add(w.o.apply(attend.apply(l, q, k, v)));
    }

    /** Attention of each chunk against its own cache, with the causal (and sliding-window) mask of the layer. */
    private Attend cached(NDManager step, List<SequenceChunk> batch) {
        NDArray[][] masks = new NDArray[2][]; // [full, windowed][chunk]
        return (l, q, k, v) -> {
            int window = config.slidingWindow(l);
            int slot = window == 0 ? 0 : 1;
            if (masks[slot] == null) {
                masks[slot] = masks(step, batch, window);
            }
            NDList outs = new NDList(batch.size());
            int start = 0;
            for (int b = 0; b < batch.size(); b++) {
                SequenceChunk c = batch.get(b);
                int n = c.tokens().length;
                NDIndex rows = new NDIndex("{}:{}", start, start + n);
                NDArray[] kv = c.cache().append(l, k.get(rows), v.get(rows));
                outs.add(Ops.attention(q.get(rows), kv[0], kv[1], masks[slot][b]));
                start += n;
            }
            return outs.size() == 1 ? outs.head() : NDArrays.concat(outs);
        };
    }

    /** Per sequence, the additive mask for its chunk, or null for a single decode token the window does not cut. */
    private static NDArray[] masks(NDManager step, List<SequenceChunk> batch, int window) {
        NDArray[] masks = new NDArray[batch.size()];
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

    private long checkedId(int id) {
        if (id < 0 || id >= config.vocabSize()) {
            throw new IllegalArgumentException("token id " + id + " outside the vocabulary of " + config.vocabSize());
        }
        return id;
    }

    @Override
    public void close() {
        for (Layer l : layers) {
            if (l != null) {
                l.closeScripts();
                l.ffn.close();
            }
        }
        rotary.close();
        if (headScript != null) {
            headScript.close();
        }
        manager.close(); // and with it every loaded layer's sub-manager
    }
}
