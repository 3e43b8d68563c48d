package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.IValue;
import ai.djl.pytorch.jni.JniUtils;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.safetensors.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A frozen decoder layer's inference blocks — attention with its cache writes, the dense SwiGLU,
 * a carved block after its routing, the LM head, RMSNorm — as methods of one TorchScript module
 * written for the model's shape and dtype, large products of a few rows split over two engine
 * threads. Each
 * block is one engine call where the same operations issued from Java cost some sixty per layer,
 * and on small models those calls, not the arithmetic, are the time of a decode step. The script
 * performs the very operations of {@link Ops}, {@link Linear.Frozen} and {@link WeightKernels}, in
 * their order, so the two paths agree to the engine's rounding; training keeps the Java path,
 * whose projections autograd and adapters see.
 */
public final class LayerScript {
    private static final String CLASS = "CmoeLayer";
    /** ScalarType codes of TorchScript's serialized form. */
    private static final int F16 = 5;
    private static final int F32 = 6;
    private static final int BF16 = 15;

    /**
     * Weights of at least this many bytes are multiplied in two halves at once in a decode step
     * when the engine has more than one thread: one matrix-vector product does not use a second
     * core, two half products side by side do, and a product this large is bound by memory
     * bandwidth, which one core does not saturate. Below it the hand-off costs more than it saves.
     */
    static final long SPLIT_BYTES = 8L << 20;

    /** Steps of at most this many rows split their products; larger ones are matrix products the engine parallelises itself. */
    static final int SPLIT_ROWS = 8;

    /** One module per distinct source: models of one shape and dtype share it. */
    private static final Map<String, PtSymbolBlock> MODULES = new ConcurrentHashMap<>();

    private final PtSymbolBlock module;
    private final ModelConfig config;
    private final DType dtype;
    private final long splitBytes;

    private LayerScript(PtSymbolBlock module, ModelConfig config, DType dtype, long splitBytes) {
        this.module = module;
        this.config = config;
        this.dtype = dtype;
        this.splitBytes = splitBytes;
    }

    /** The dtype of the weights its products take. */
    public DType dtype() {
        return dtype;
    }

    /** The script for {@code config}'s layers with projection weights held in {@code dtype}; compiled once per process. */
    public static LayerScript of(ModelConfig config, DType dtype) {
        return of(config, dtype, SPLIT_BYTES);
    }

    /** The script with products split from {@code splitBytes} of weight on: tests split every one. */
    public static LayerScript of(ModelConfig config, DType dtype, long splitBytes) {
        String source = source(config, dtype, splitBytes);
        return new LayerScript(MODULES.computeIfAbsent(source, s -> TorchScripts.load(CLASS, s)), config, dtype,
                splitBytes);
    }

    /**
     * A layer's attention weights as one engine list, in the order the script reads them: the
     * norm, q, k, v and o (transposed, in the kernels' dtype), the q/k/v biases and the output
     * bias where the model has them, the per-head q/k norms where it has them. The list holds its
     * own references; close it with the layer.
     */
    IValue attentionWeights(NDArray norm, Linear.Frozen q, Linear.Frozen k, Linear.Frozen v, Linear.Frozen o,
                            NDArray qNorm, NDArray kNorm) {
        List<NDArray> w = new ArrayList<>(List.of(norm, q.wT(), k.wT(), v.wT(), o.wT()));
        if (config.attentionBias()) {
            w.addAll(List.of(q.bias(), k.bias(), v.bias()));
        }
        if (config.outputBias()) {
            w.add(o.bias());
        }
        if (config.qkNorm()) {
            w.addAll(List.of(qNorm, kNorm));
        }
        int whole = w.size();
        for (Linear.Frozen p : List.of(q, k, v, o)) {
            addHalves(w, p.wT());
        }
        return list(w, whole);
    }

    /** A dense FFN's weights as one engine list: its norm, then gate, up and down transposed, then the halves of the large ones. */
    IValue feedForwardWeights(NDArray norm, Linear.Frozen gate, Linear.Frozen up, Linear.Frozen down) {
        List<NDArray> w = new ArrayList<>(List.of(norm, gate.wT(), up.wT(), down.wT()));
        for (Linear.Frozen p : List.of(gate, up, down)) {
            addHalves(w, p.wT());
        }
        return list(w, 4);
    }

    /** The LM head's weight (transposed) and, when it is large, its halves, as one engine list. */
    IValue headWeights(Linear.Frozen head) {
        List<NDArray> w = new ArrayList<>(List.of(head.wT()));
        addHalves(w, head.wT());
        return list(w, 1);
    }

    /** The two column halves of a large transposed weight (in, out): views of its two row blocks. */
    private void addHalves(List<NDArray> w, NDArray wT) {
        long in = wT.getShape().get(0);
        long out = wT.getShape().get(1);
        if (splits(in, out, dtype, splitBytes)) {
            w.add(wT.get(new NDIndex(":, 0:{}", out / 2)));
            w.add(wT.get(new NDIndex(":, {}:", out / 2)));
        }
    }

    /** Whether a (in → out) projection held in {@code dtype} is multiplied in halves; the source and the weight lists agree on it. */
    static boolean splits(long in, long out, DType dtype, long splitBytes) {
        return in * out * dtype.byteSize() >= splitBytes;
    }

    /** Whether this thread's products may take a second core: the engine runs more than one intra-op thread. */
    static boolean splitNow() {
        return JniUtils.getNumThreads() > 1;
    }

    /**
     * {@code arrays} as one engine list. Entries from {@code views} on are the halves made for
     * it: the list holds its own references to them, so their Java handles are closed here and
     * a rebuilt list (a replaced FFN) leaves none behind.
     */
    private static IValue list(List<NDArray> arrays, int views) {
        PtNDArray[] pt = TorchScripts.pt(arrays.toArray(new NDArray[0]));
        try {
            return IValue.listFrom(pt);
        } finally {
            for (int i = views; i < pt.length; i++) {
                pt[i].close();
            }
        }
    }

    /** What every layer of one step shares: the rows' rotary tables and each sequence's position and chunk length. */
    static final class Step implements AutoCloseable {
        private final IValue cos;
        private final IValue sin;
        private final IValue past;
        private final IValue lengths;
        private final IValue split;
        private final List<KvCache> caches;

        Step(NDArray cos, NDArray sin, List<SequenceChunk> batch) {
            long[] p = new long[batch.size()];
            long[] n = new long[batch.size()];
            caches = new ArrayList<>(batch.size());
            for (int b = 0; b < p.length; b++) {
                SequenceChunk c = batch.get(b);
                p[b] = c.cache().length();
                n[b] = c.tokens().length;
                caches.add(c.cache());
            }
            this.cos = IValue.from((PtNDArray) cos);
            this.sin = IValue.from((PtNDArray) sin);
            this.past = IValue.listFrom(p);
            this.lengths = IValue.listFrom(n);
            this.split = IValue.from(splitNow());
        }

        @Override
        public void close() {
            cos.close();
            sin.close();
            past.close();
            lengths.close();
            split.close();
        }
    }

    /**
     * {@code x + o(attention(…))} for layer {@code layer}: normalises x, projects q, k and v,
     * rotates them, writes each sequence's new keys and values into its cache after the cached
     * ones (committed by the cache's advance, as {@link KvCache#append} does) and attends to the
     * whole history under the causal (and the layer's sliding-window) mask.
     */
    NDArray attention(NDArray x, IValue weights, Step step, int layer) {
        NDArray[] keys = new NDArray[step.caches.size()];
        NDArray[] values = new NDArray[keys.length];
        for (int b = 0; b < keys.length; b++) {
            NDArray[] kv = step.caches.get(b).buffers(layer);
            keys[b] = kv[0];
            values[b] = kv[1];
        }
        IValue in = IValue.from((PtNDArray) x);
        IValue k = IValue.listFrom(TorchScripts.pt(keys));
        IValue v = IValue.listFrom(TorchScripts.pt(values));
        IValue window = IValue.from((long) config.slidingWindow(layer));
        try (IValue out = TorchScripts.run(module, "attention", in, weights, step.cos, step.sin, k, v,
                step.past, step.lengths, window, step.split)) {
            return out.toTensor((PtNDManager) x.getManager());
        } finally {
            in.close();
            k.close();
            v.close();
            window.close();
        }
    }

    /** {@code x + down(SiLU(gate(h)) ⊙ up(h))} with h = RMSNorm(x): a dense FFN block and its residual. */
    NDArray feedForward(NDArray x, IValue weights, Step step) {
        return runOnWeights("swiglu", x, weights, step);
    }

    /** {@code method(x, weights, split)}: the blocks whose only per-step inputs are x and the step's split. */
    private NDArray runOnWeights(String method, NDArray x, IValue weights, Step step) {
        IValue in = IValue.from((PtNDArray) x);
        try (IValue out = TorchScripts.run(module, method, in, weights, step.split)) {
            return out.toTensor((PtNDManager) x.getManager());
        } finally {
            in.close();
        }
    }

    /**
     * A carved FFN block with its residual, {@code residual + shared(x) + Σ g · expert(x)}, in
     * one call: the operations of the grouped experts' Java path on the plan the caller made.
     * Batched: {@code gateUps} and {@code downs} hold the stacked (N_r, …) tensors and
     * {@code take} the padded rows; used: one block per used expert, {@code take} the rows
     * sorted by expert or null when every used expert takes every row, {@code cuts} where each
     * but the first starts. The combine is {@code combineA · outputs} for a (tokens, rows) gate
     * matrix when {@code combineB} is null, else the outputs' rows {@code combineA} (int64),
     * times the gate column {@code combineB}, summed over each token's {@code active} slots.
     *
     * @param shared the shared expert's {gate/up, down} transposed, or null
     */
    public NDArray mixture(NDArray residual, NDArray x, NDArray take, NDArray[] gateUps, NDArray[] downs, long[] cuts,
                           int widest, NDArray combineA, NDArray combineB, int active, NDArray[] shared) {
        boolean batched = cuts == null;
        boolean twoThreads = splitNow();
        long[] flags = {batched ? 1 : 0, take == null ? 1 : 0, widest, combineB == null ? 1 : 0, active,
            !batched && forks(twoThreads, gateUps[0], dtype, splitBytes) ? 1 : 0,
            shared != null && forks(twoThreads, shared[0], dtype, splitBytes) ? 1 : 0};
        List<IValue> in = new ArrayList<>(10);
        try {
            in.add(IValue.from((PtNDArray) residual));
            in.add(IValue.from((PtNDArray) x));
            in.add(IValue.from((PtNDArray) (take == null ? x : take)));
            in.add(IValue.listFrom(TorchScripts.pt(gateUps)));
            in.add(IValue.listFrom(TorchScripts.pt(downs)));
            in.add(IValue.listFrom(cuts == null ? new long[0] : cuts));
            in.add(IValue.listFrom(flags));
            in.add(IValue.from((PtNDArray) combineA));
            in.add(IValue.from((PtNDArray) (combineB == null ? combineA : combineB)));
            in.add(IValue.listFrom(shared == null ? new PtNDArray[0] : TorchScripts.pt(shared)));
            try (IValue out = TorchScripts.run(module, "mixture", in.toArray(new IValue[0]))) {
                return out.toTensor((PtNDManager) x.getManager());
            }
        } finally {
            in.forEach(IValue::close);
        }
    }

    /** Logits of x (rows, hidden), normalised already, through the LM head's {@link #headWeights}. */
    NDArray head(NDArray x, IValue weights, Step step) {
        return runOnWeights("head", x, weights, step);
    }

    /** RMSNorm of x with {@code weight}, as {@link Ops#rmsNorm} computes it. */
    NDArray norm(NDArray x, NDArray weight) {
        IValue in = IValue.from((PtNDArray) x);
        IValue w = IValue.from((PtNDArray) weight);
        try (IValue out = TorchScripts.run(module, "rms", in, w)) {
            return out.toTensor((PtNDManager) x.getManager());
        } finally {
            in.close();
            w.close();
        }
    }

    /**
     * The module's source for one shape and dtype: shapes, eps and the attention scale are
     * literals, and only the weights the model has are read. Each line mirrors an operation of the
     * Java path (named in the comments of {@link Ops}), so a change there must be made here too;
     * {@code LayerScriptTest} compares the two.
     */
    static String source(ModelConfig c, DType dtype, long splitBytes) {
        int heads = c.numHeads();
        int kvHeads = c.numKvHeads();
        int hd = c.headDim();
        int group = heads / kvHeads;
        int half = hd / 2;
        String eps = Double.toString(c.rmsNormEps());
        String scale = Double.toString(1.0 / Math.sqrt(hd));
        String self = "self: __torch__." + CLASS;
        int next = 5;
        String qb = "";
        String kb = "";
        String vb = "";
        if (c.attentionBias()) {
            qb = "torch.add(" + "%s" + ", w[" + next++ + "])";
            kb = "torch.add(" + "%s" + ", w[" + next++ + "])";
            vb = "torch.add(" + "%s" + ", w[" + next++ + "])";
        }
        String ob = c.outputBias() ? "torch.add(%s, w[" + next++ + "])" : "";
        int qn = c.qkNorm() ? next : -1;
        next += c.qkNorm() ? 2 : 0;
        long d = c.hiddenSize();
        long inter = c.intermediateSize();
        // the attention list's halves follow its other entries, in the order q, k, v, o
        String pq = product("h", 1, d, c.qDim(), dtype, splitBytes, next);
        next += splits(d, c.qDim(), dtype, splitBytes) ? 2 : 0;
        String pk = product("h", 2, d, c.kvDim(), dtype, splitBytes, next);
        next += splits(d, c.kvDim(), dtype, splitBytes) ? 2 : 0;
        String pv = product("h", 3, d, c.kvDim(), dtype, splitBytes, next);
        next += splits(d, c.kvDim(), dtype, splitBytes) ? 2 : 0;
        String po = product("a", 4, c.qDim(), d, dtype, splitBytes, next);
        // the FFN list: norm, gate, up, down, then the halves of gate, up and down
        int f = 4;
        String pg = product("h", 1, d, inter, dtype, splitBytes, f);
        f += splits(d, inter, dtype, splitBytes) ? 2 : 0;
        String pu = product("h", 2, d, inter, dtype, splitBytes, f);
        f += splits(d, inter, dtype, splitBytes) ? 2 : 0;
        String pd = product("torch.mul(torch.mul(g, torch.sigmoid(g)), u)", 3, inter, d, dtype, splitBytes, f);
        String ph = product("x", 0, d, c.vocabSize(), dtype, splitBytes, 1);
        StringBuilder s = new StringBuilder();
        s.append(header(CLASS));
        // Ops.rmsNorm: x / sqrt(mean(x²) + eps) * weight
        s.append("  def rms(").append(self).append(",\n    x: Tensor,\n    w: Tensor) -> Tensor:\n");
        s.append("    r = torch.sqrt(torch.add(torch.mean(torch.square(x), [-1], True), ").append(eps).append("))\n");
        s.append("    return torch.mul(torch.div(x, r), w)\n");
        s.append(proj(self, dtype));
        // a large projection of a few rows: its two column halves at once, the first on another thread
        s.append("  def pj(").append(self).append(",\n    x: Tensor,\n    wt: Tensor,\n    a: Tensor,\n    b: Tensor,\n")
                .append("    split: bool) -> Tensor:\n");
        s.append("    if torch.__and__(split, torch.le(torch.size(x, 0), ").append(SPLIT_ROWS).append(")):\n");
        s.append("      fut = fork(self.proj, x, a)\n");
        s.append("      y = self.proj(x, b)\n");
        s.append("      return torch.cat([torch.wait(fut), y], -1)\n");
        s.append("    return self.proj(x, wt)\n");
        // Ops.rope: rotate half
        s.append("  def rope(").append(self).append(",\n    x: Tensor,\n    cos: Tensor,\n    sin: Tensor) -> Tensor:\n");
        s.append("    x1 = torch.slice(x, -1, 0, ").append(half).append(")\n");
        s.append("    x2 = torch.slice(x, -1, ").append(half).append(", ").append(hd).append(")\n");
        s.append("    a = torch.sub(torch.mul(x1, cos), torch.mul(x2, sin))\n");
        s.append("    b = torch.add(torch.mul(x2, cos), torch.mul(x1, sin))\n");
        s.append("    return torch.cat([a, b], -1)\n");
        // Ops.causalMask: 0 where a key is visible, -inf elsewhere
        // made on the device of the scores it masks, as Ops.causalMask makes it on the step's manager
        s.append("  def mask(").append(self).append(",\n    p: int,\n    n: int,\n    window: int,\n    like: Tensor) -> Tensor:\n");
        s.append("    dev = ops.prim.device(like)\n");
        s.append("    e = torch.add(p, n)\n");
        s.append("    qp = torch.reshape(torch.arange(p, e, dtype=None, layout=None, device=dev, pin_memory=None), [n, 1])\n");
        s.append("    kp = torch.reshape(torch.arange(0, e, dtype=None, layout=None, device=dev, pin_memory=None), [1, e])\n");
        s.append("    vis = torch.le(kp, qp)\n");
        s.append("    if torch.gt(window, 0):\n");
        s.append("      vis = torch.logical_and(vis, torch.gt(kp, torch.sub(qp, window)))\n");
        s.append("    z = torch.zeros([n, e], dtype=None, layout=None, device=dev, pin_memory=None)\n");
        s.append("    return torch.where(vis, z, torch.sub(z, float(\"inf\")))\n");
        // LlamaModel.layer's attention half with LlamaModel.cached, KvCache.append and Ops.attention
        s.append("  def attention(").append(self).append(",\n    x: Tensor,\n    w: List[Tensor],\n")
                .append("    cos: Tensor,\n    sin: Tensor,\n    keys: List[Tensor],\n    values: List[Tensor],\n")
                .append("    past: List[int],\n    lens: List[int],\n    window: int,\n    split: bool) -> Tensor:\n");
        s.append("    t = torch.size(x, 0)\n");
        s.append("    h = self.rms(x, w[0])\n");
        s.append("    q = torch.reshape(").append(bias(qb, pq)).append(", [t, ").append(heads).append(", ")
                .append(hd).append("])\n");
        s.append("    k = torch.reshape(").append(bias(kb, pk)).append(", [t, ").append(kvHeads).append(", ")
                .append(hd).append("])\n");
        s.append("    v = torch.reshape(").append(bias(vb, pv)).append(", [t, ").append(kvHeads).append(", ")
                .append(hd).append("])\n");
        if (qn >= 0) {
            s.append("    q = self.rms(q, w[").append(qn).append("])\n");
            s.append("    k = self.rms(k, w[").append(qn + 1).append("])\n");
        }
        s.append("    q = self.rope(q, cos, sin)\n");
        s.append("    k = self.rope(k, cos, sin)\n");
        s.append("    outs = annotate(List[Tensor], [])\n");
        s.append("    start = 0\n");
        s.append("    for i in range(torch.len(keys)):\n");
        s.append("      n = lens[i]\n");
        s.append("      p = past[i]\n");
        s.append("      e = torch.add(p, n)\n");
        s.append("      _0 = torch.copy_(torch.narrow(keys[i], 0, p, n), torch.narrow(k, 0, start, n))\n");
        s.append("      _1 = torch.copy_(torch.narrow(values[i], 0, p, n), torch.narrow(v, 0, start, n))\n");
        s.append("      kk = torch.narrow(keys[i], 0, 0, e)\n");
        s.append("      vv = torch.narrow(values[i], 0, 0, e)\n");
        s.append("      qi = torch.narrow(q, 0, start, n)\n");
        s.append("      gn = torch.mul(").append(group).append(", n)\n");
        s.append("      qg = torch.reshape(torch.permute(torch.reshape(qi, [n, ").append(kvHeads).append(", ").append(group)
                .append(", ").append(hd).append("]), [1, 2, 0, 3]), [").append(kvHeads).append(", gn, ").append(hd).append("])\n");
        s.append("      sc = torch.mul(torch.matmul(qg, torch.permute(kk, [1, 2, 0])), ").append(scale).append(")\n");
        s.append("      if torch.__or__(torch.gt(n, 1), torch.__and__(torch.gt(window, 0), torch.gt(e, window))):\n");
        s.append("        m = self.mask(p, n, window, sc)\n");
        s.append("        sc4 = torch.reshape(sc, [").append(kvHeads).append(", ").append(group).append(", n, e])\n");
        s.append("        sc = torch.reshape(torch.add(sc4, m), [").append(kvHeads).append(", gn, e])\n");
        s.append("      o = torch.matmul(torch.softmax(sc, -1), torch.permute(vv, [1, 0, 2]))\n");
        s.append("      o4 = torch.reshape(o, [").append(kvHeads).append(", ").append(group).append(", n, ").append(hd)
                .append("])\n");
        s.append("      _2 = torch.append(outs, torch.reshape(torch.permute(o4, [2, 0, 1, 3]), [n, ").append(heads * hd)
                .append("]))\n");
        s.append("      start = torch.add(start, n)\n");
        s.append("    if torch.eq(torch.len(outs), 1):\n");
        s.append("      a = outs[0]\n");
        s.append("    else:\n");
        s.append("      a = torch.cat(outs, 0)\n");
        s.append("    return torch.add(x, ").append(bias(ob, po)).append(")\n");
        // DenseFeedForward.forward with Ops.silu, and the layer's residual
        s.append("  def swiglu(").append(self).append(",\n    x: Tensor,\n    w: List[Tensor],\n    split: bool) -> Tensor:\n");
        s.append("    h = self.rms(x, w[0])\n");
        s.append("    g = ").append(pg).append("\n");
        s.append("    u = ").append(pu).append("\n");
        s.append("    return torch.add(x, ").append(pd).append(")\n");
        // the LM head: Linear.Frozen over the (tied or own) head weight
        s.append("  def head(").append(self).append(",\n    x: Tensor,\n    w: List[Tensor],\n    split: bool) -> Tensor:\n");
        s.append("    return ").append(ph).append("\n");
        // GroupedExperts.forward (batched or used experts, matrix or gather combine), MoeFeedForward.shared
        // and the layer's residual; flags: batched, every row to every used expert, widest, matrix combine, N_k,
        // routed experts on two threads, shared expert on a thread of its own
        s.append("  def mixture(").append(self).append(",\n    res: Tensor,\n    x: Tensor,\n    take: Tensor,\n")
                .append("    gu: List[Tensor],\n    dn: List[Tensor],\n    cuts: List[int],\n    flags: List[int],\n")
                .append("    ca: Tensor,\n    cb: Tensor,\n    shared: List[Tensor]) -> Tensor:\n");
        // with a second thread and a few rows, the shared expert runs beside the routed ones
        s.append("    if torch.__and__(torch.gt(torch.len(shared), 0), torch.__and__(torch.eq(flags[6], 1), ")
                .append("torch.le(torch.size(x, 0), ").append(SPLIT_ROWS).append("))):\n");
        s.append("      sf = fork(self.expert, x, shared[0], shared[1])\n");
        s.append("      r = self.routed(x, take, gu, dn, cuts, flags, ca, cb)\n");
        s.append("      return torch.add(res, torch.add(torch.wait(sf), r))\n");
        s.append("    r = self.routed(x, take, gu, dn, cuts, flags, ca, cb)\n");
        s.append("    if torch.gt(torch.len(shared), 0):\n");
        s.append("      return torch.add(res, torch.add(self.expert(x, shared[0], shared[1]), r))\n");
        s.append("    return torch.add(res, r)\n");
        s.append("  def routed(").append(self).append(",\n    x: Tensor,\n    take: Tensor,\n")
                .append("    gu: List[Tensor],\n    dn: List[Tensor],\n    cuts: List[int],\n    flags: List[int],\n")
                .append("    ca: Tensor,\n    cb: Tensor) -> Tensor:\n");
        s.append("    hidden = torch.size(x, 1)\n");
        s.append("    outputs = self.outputs(x, take, gu, dn, cuts, flags)\n");
        s.append("    if torch.eq(flags[3], 1):\n");
        s.append("      return torch.matmul(ca, outputs)\n");
        s.append("    t = torch.floordiv(torch.size(ca, 0), flags[4])\n");
        s.append("    picked = torch.mul(torch.index_select(outputs, 0, ca), cb)\n");
        s.append("    return torch.sum(torch.reshape(picked, [t, flags[4], hidden]), [1])\n");
        s.append(expertMethods(self));
        return s.toString();
    }

    /** A module's class line, its empty parameter lists and the identity {@code forward} TorchScript requires. */
    static String header(String className) {
        return "class " + className + "(Module):\n"
                + "  __parameters__ = []\n  __buffers__ = []\n  training : bool\n"
                + "  def forward(self: __torch__." + className + ",\n    x: Tensor) -> Tensor:\n    return x\n";
    }

    /** Whether an expert block of weight {@code w} runs on a thread of its own: a second thread, and weights worth the hand-off. */
    static boolean forks(boolean twoThreads, NDArray w, DType dtype, long splitBytes) {
        return twoThreads && w.size() * dtype.byteSize() >= splitBytes;
    }

    /** WeightKernels.project: input to the weights' dtype, product, result to float32. */
    static String proj(String self, DType dtype) {
        String body = switch (dtype) {
            case F32 -> "    return torch.matmul(x, wt)\n";
            case F16 -> "    return torch.to(torch.matmul(torch.to(x, " + F16 + "), wt), " + F32 + ")\n";
            case BF16 -> "    return torch.to(torch.matmul(torch.to(x, " + BF16 + "), wt), " + F32 + ")\n";
        };
        return "  def proj(" + self + ",\n    x: Tensor,\n    wt: Tensor) -> Tensor:\n" + body;
    }

    /**
     * The routed experts' methods, which both this module and {@link ExpertsScript} have: glu,
     * expert, experts and {@code outputs}, the experts' unweighted outputs in the order of their
     * rows (GroupedExperts.forward before its combine). {@code outputs}' flags are the mixture's:
     * batched, rows (0: sorted by {@code take}, 1: every row to every expert, 2: x is sorted
     * already), widest, then index 5: the first half of the experts on another thread.
     */
    static String expertMethods(String self) {
        StringBuilder s = new StringBuilder();
        // Ops.gatedSilu: SiLU of the first half of the last axis times the second half
        s.append("  def glu(").append(self).append(",\n    gu: Tensor) -> Tensor:\n");
        s.append("    two = torch.size(gu, -1)\n");
        s.append("    m = torch.floordiv(two, 2)\n");
        s.append("    g = torch.slice(gu, -1, 0, m)\n");
        s.append("    u = torch.slice(gu, -1, m, two)\n");
        s.append("    return torch.mul(torch.mul(g, torch.sigmoid(g)), u)\n");
        // MoeFeedForward.shared: one SwiGLU expert of fused gate/up
        s.append("  def expert(").append(self).append(",\n    x: Tensor,\n    gu: Tensor,\n    dn: Tensor) -> Tensor:\n");
        s.append("    return self.proj(self.glu(self.proj(x, gu)), dn)\n");
        s.append("  def experts(").append(self).append(",\n    ins: List[Tensor],\n    gu: List[Tensor],\n")
                .append("    dn: List[Tensor],\n    lo: int,\n    hi: int) -> List[Tensor]:\n");
        s.append("    outs = annotate(List[Tensor], [])\n");
        s.append("    for i in range(lo, hi):\n");
        s.append("      _0 = torch.append(outs, self.expert(ins[i], gu[i], dn[i]))\n");
        s.append("    return outs\n");
        s.append("  def outputs(").append(self).append(",\n    x: Tensor,\n    take: Tensor,\n")
                .append("    gu: List[Tensor],\n    dn: List[Tensor],\n    cuts: List[int],\n    flags: List[int]) -> Tensor:\n");
        s.append("    hidden = torch.size(x, 1)\n");
        s.append("    if torch.eq(flags[0], 1):\n");
        s.append("      r = torch.size(gu[0], 0)\n");
        s.append("      padded = torch.reshape(torch.index_select(x, 0, take), [r, flags[2], hidden])\n");
        s.append("      y = self.proj(self.glu(self.proj(padded, gu[0])), dn[0])\n");
        s.append("      return torch.reshape(y, [torch.mul(r, flags[2]), hidden])\n");
        s.append("    n = torch.len(gu)\n");
        s.append("    ins = annotate(List[Tensor], [])\n");
        s.append("    if torch.eq(flags[1], 1):\n");
        s.append("      for i in range(n):\n");
        s.append("        _0 = torch.append(ins, x)\n");
        s.append("    else:\n");
        s.append("      srt = x\n");
        s.append("      if torch.eq(flags[1], 0):\n");
        s.append("        srt = torch.index_select(x, 0, take)\n");
        s.append("      if torch.eq(n, 1):\n");
        s.append("        _1 = torch.append(ins, srt)\n");
        s.append("      else:\n");
        s.append("        ins = torch.tensor_split(srt, cuts, 0)\n");
        // with a second thread, a few rows and three or more experts, the first half of the
        // experts runs on another thread (the activation is elementwise: per expert it is the same)
        s.append("    if torch.__and__(torch.eq(flags[5], 1), torch.__and__(torch.ge(n, 3), ")
                .append("torch.le(torch.size(x, 0), ").append(SPLIT_ROWS).append("))):\n");
        s.append("      half = torch.floordiv(n, 2)\n");
        s.append("      fut = fork(self.experts, ins, gu, dn, 0, half)\n");
        s.append("      rest = self.experts(ins, gu, dn, half, n)\n");
        s.append("      return torch.cat(torch.add(torch.wait(fut), rest), 0)\n");
        s.append("    parts = annotate(List[Tensor], [])\n");
        s.append("    for i in range(n):\n");
        s.append("      _2 = torch.append(parts, self.proj(ins[i], gu[i]))\n");
        s.append("    if torch.eq(n, 1):\n");
        s.append("      return self.proj(self.glu(parts[0]), dn[0])\n");
        s.append("    acts = torch.tensor_split(self.glu(torch.cat(parts, 0)), cuts, 0)\n");
        s.append("    outs = annotate(List[Tensor], [])\n");
        s.append("    for i in range(n):\n");
        s.append("      _3 = torch.append(outs, self.proj(acts[i], dn[i]))\n");
        s.append("    return torch.cat(outs, 0)\n");
        return s.toString();
    }

    /**
     * The script's product of {@code input} with entry {@code w} of its weight list: in halves
     * (entries {@code halves} and {@code halves + 1}) when the weight is large, else whole.
     */
    private static String product(String input, int w, long in, long out, DType dtype, long splitBytes, int halves) {
        return splits(in, out, dtype, splitBytes)
                ? "self.pj(" + input + ", w[" + w + "], w[" + halves + "], w[" + (halves + 1) + "], split)"
                : "self.proj(" + input + ", w[" + w + "])";
    }

    private static String bias(String template, String product) {
        return template.isEmpty() ? product : String.format(template, product);
    }
}
