package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.IValue;
import ai.djl.pytorch.jni.IValueUtils;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.safetensors.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A frozen decoder layer's inference blocks — attention with its cache writes, the dense SwiGLU,
 * RMSNorm — as methods of one TorchScript module written for the model's shape and dtype. Each
 * block is one engine call where the same operations issued from Java cost some sixty per layer,
 * and on small models those calls, not the arithmetic, are the time of a decode step. The script
 * performs the very operations of {@link Ops}, {@link Linear.Frozen} and {@link WeightKernels}, in
 * their order, so the two paths agree to the engine's rounding; training keeps the Java path,
 * whose projections autograd and adapters see.
 */
final class LayerScript {
    private static final String CLASS = "CmoeLayer";
    /** ScalarType codes of TorchScript's serialized form. */
    private static final int F16 = 5;
    private static final int F32 = 6;
    private static final int BF16 = 15;

    /** One module per distinct source: models of one shape and dtype share it. */
    private static final Map<String, PtSymbolBlock> MODULES = new ConcurrentHashMap<>();

    private final PtSymbolBlock module;
    private final ModelConfig config;

    private LayerScript(PtSymbolBlock module, ModelConfig config) {
        this.module = module;
        this.config = config;
    }

    /** The script for {@code config}'s layers with projection weights held in {@code dtype}. */
    static LayerScript of(ModelConfig config, DType dtype) {
        String source = source(config, dtype);
        return new LayerScript(MODULES.computeIfAbsent(source, s -> TorchScripts.load(CLASS, s)), config);
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
        return list(w);
    }

    /** A dense FFN's weights as one engine list: its norm, then gate, up and down transposed. */
    IValue feedForwardWeights(NDArray norm, Linear.Frozen gate, Linear.Frozen up, Linear.Frozen down) {
        return list(List.of(norm, gate.wT(), up.wT(), down.wT()));
    }

    private static IValue list(List<NDArray> arrays) {
        PtNDArray[] pt = new PtNDArray[arrays.size()];
        for (int i = 0; i < pt.length; i++) {
            pt[i] = (PtNDArray) arrays.get(i);
        }
        return IValue.listFrom(pt);
    }

    /** What every layer of one step shares: the rows' rotary tables and each sequence's position and chunk length. */
    static final class Step implements AutoCloseable {
        private final IValue cos;
        private final IValue sin;
        private final IValue past;
        private final IValue lengths;
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
        }

        @Override
        public void close() {
            cos.close();
            sin.close();
            past.close();
            lengths.close();
        }
    }

    /**
     * {@code x + o(attention(…))} for layer {@code layer}: normalises x, projects q, k and v,
     * rotates them, writes each sequence's new keys and values into its cache after the cached
     * ones (committed by the cache's advance, as {@link KvCache#append} does) and attends to the
     * whole history under the causal (and the layer's sliding-window) mask.
     */
    NDArray attention(NDArray x, IValue weights, Step step, int layer) {
        PtNDArray[] keys = new PtNDArray[step.caches.size()];
        PtNDArray[] values = new PtNDArray[keys.length];
        for (int b = 0; b < keys.length; b++) {
            NDArray[] kv = step.caches.get(b).buffers(layer);
            keys[b] = (PtNDArray) kv[0];
            values[b] = (PtNDArray) kv[1];
        }
        IValue in = IValue.from((PtNDArray) x);
        IValue k = IValue.listFrom(keys);
        IValue v = IValue.listFrom(values);
        IValue window = IValue.from((long) config.slidingWindow(layer));
        try (IValue out = IValueUtils.runMethod(module, "attention", in, weights, step.cos, step.sin, k, v,
                step.past, step.lengths, window)) {
            return out.toTensor((PtNDManager) x.getManager());
        } finally {
            in.close();
            k.close();
            v.close();
            window.close();
        }
    }

    /** {@code x + down(SiLU(gate(h)) ⊙ up(h))} with h = RMSNorm(x): a dense FFN block and its residual. */
    NDArray feedForward(NDArray x, IValue weights) {
        IValue in = IValue.from((PtNDArray) x);
        try (IValue out = IValueUtils.runMethod(module, "swiglu", in, weights)) {
            return out.toTensor((PtNDManager) x.getManager());
        } finally {
            in.close();
        }
    }

    /** RMSNorm of x with {@code weight}, as {@link Ops#rmsNorm} computes it. */
    NDArray norm(NDArray x, NDArray weight) {
        IValue in = IValue.from((PtNDArray) x);
        IValue w = IValue.from((PtNDArray) weight);
        try (IValue out = IValueUtils.runMethod(module, "rms", in, w)) {
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
    static String source(ModelConfig c, DType dtype) {
        int heads = c.numHeads();
        int kvHeads = c.numKvHeads();
        int hd = c.headDim();
        int group = heads / kvHeads;
        int half = hd / 2;
        String eps = Double.toString(c.rmsNormEps());
        String scale = Double.toString(1.0 / Math.sqrt(hd));
        String self = "self: __torch__." + CLASS;
        String proj = switch (dtype) {
            case F32 -> "    return torch.matmul(x, wt)\n";
            case F16 -> "    return torch.to(torch.matmul(torch.to(x, " + F16 + "), wt), " + F32 + ")\n";
            case BF16 -> "    return torch.to(torch.matmul(torch.to(x, " + BF16 + "), wt), " + F32 + ")\n";
        };
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
        StringBuilder s = new StringBuilder();
        s.append("class ").append(CLASS).append("(Module):\n");
        s.append("  __parameters__ = []\n  __buffers__ = []\n  training : bool\n");
        s.append("  def forward(").append(self).append(",\n    x: Tensor) -> Tensor:\n    return x\n");
        // Ops.rmsNorm: x / sqrt(mean(x²) + eps) * weight
        s.append("  def rms(").append(self).append(",\n    x: Tensor,\n    w: Tensor) -> Tensor:\n");
        s.append("    r = torch.sqrt(torch.add(torch.mean(torch.square(x), [-1], True), ").append(eps).append("))\n");
        s.append("    return torch.mul(torch.div(x, r), w)\n");
        // WeightKernels.project: input to the weights' dtype, product, result to float32
        s.append("  def proj(").append(self).append(",\n    x: Tensor,\n    wt: Tensor) -> Tensor:\n").append(proj);
        // Ops.rope: rotate half
        s.append("  def rope(").append(self).append(",\n    x: Tensor,\n    cos: Tensor,\n    sin: Tensor) -> Tensor:\n");
        s.append("    x1 = torch.slice(x, -1, 0, ").append(half).append(")\n");
        s.append("    x2 = torch.slice(x, -1, ").append(half).append(", ").append(hd).append(")\n");
        s.append("    a = torch.sub(torch.mul(x1, cos), torch.mul(x2, sin))\n");
        s.append("    b = torch.add(torch.mul(x2, cos), torch.mul(x1, sin))\n");
        s.append("    return torch.cat([a, b], -1)\n");
        // Ops.causalMask: 0 where a key is visible, -inf elsewhere
        s.append("  def mask(").append(self).append(",\n    p: int,\n    n: int,\n    window: int) -> Tensor:\n");
        s.append("    qp = torch.reshape(torch.arange(p, torch.add(p, n)), [n, 1])\n");
        s.append("    kp = torch.reshape(torch.arange(0, torch.add(p, n)), [1, torch.add(p, n)])\n");
        s.append("    vis = torch.le(kp, qp)\n");
        s.append("    if torch.gt(window, 0):\n");
        s.append("      vis = torch.logical_and(vis, torch.gt(kp, torch.sub(qp, window)))\n");
        s.append("    z = torch.zeros([n, torch.add(p, n)])\n");
        s.append("    return torch.where(vis, z, torch.sub(z, float(\"inf\")))\n");
        // LlamaModel.layer's attention half with LlamaModel.cached, KvCache.append and Ops.attention
        s.append("  def attention(").append(self).append(",\n    x: Tensor,\n    w: List[Tensor],\n")
                .append("    cos: Tensor,\n    sin: Tensor,\n    keys: List[Tensor],\n    values: List[Tensor],\n")
                .append("    past: List[int],\n    lens: List[int],\n    window: int) -> Tensor:\n");
        s.append("    t = torch.size(x, 0)\n");
        s.append("    h = self.rms(x, w[0])\n");
        s.append("    q = torch.reshape(").append(bias(qb, "self.proj(h, w[1])")).append(", [t, ").append(heads).append(", ")
                .append(hd).append("])\n");
        s.append("    k = torch.reshape(").append(bias(kb, "self.proj(h, w[2])")).append(", [t, ").append(kvHeads).append(", ")
                .append(hd).append("])\n");
        s.append("    v = torch.reshape(").append(bias(vb, "self.proj(h, w[3])")).append(", [t, ").append(kvHeads).append(", ")
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
        s.append("        m = self.mask(p, n, window)\n");
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
        s.append("    return torch.add(x, ").append(bias(ob, "self.proj(a, w[4])")).append(")\n");
        // DenseFeedForward.forward with Ops.silu, and the layer's residual
        s.append("  def swiglu(").append(self).append(",\n    x: Tensor,\n    w: List[Tensor]) -> Tensor:\n");
        s.append("    h = self.rms(x, w[0])\n");
        s.append("    g = self.proj(h, w[1])\n");
        s.append("    u = self.proj(h, w[2])\n");
        s.append("    return torch.add(x, self.proj(torch.mul(torch.mul(g, torch.sigmoid(g)), u), w[3]))\n");
        return s.toString();
    }

    private static String bias(String template, String product) {
        return template.isEmpty() ? product : String.format(template, product);
    }
}
