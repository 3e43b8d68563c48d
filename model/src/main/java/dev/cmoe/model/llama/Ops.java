package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;

/**
 * The named kernels of the LLaMA recipe on NDArrays. They accept any leading dimensions so the
 * inference path (tokens, …) and the training path (batch, time, …) share one implementation.
 */
public final class Ops {
    private Ops() {
    }

    /** RMSNorm over the last axis: {@code x / sqrt(mean(x²) + eps) * weight}. */
    public static NDArray rmsNorm(NDArray x, NDArray weight, double eps) {
        NDArray rms = x.square().mean(new int[] {-1}, true).add(eps).sqrt();
        return x.div(rms).mul(weight);
    }

    /** SiLU(x) = x · σ(x). */
    public static NDArray silu(NDArray x) {
        return x.mul(Activation.sigmoid(x));
    }

    /**
     * SwiGLU FFN with pre-transposed weights.
     *
     * @param x (…, hidden)
     * @param wGateT (hidden, inter)
     * @param wUpT (hidden, inter)
     * @param wDownT (inter, hidden)
     */
    public static NDArray swiglu(NDArray x, NDArray wGateT, NDArray wUpT, NDArray wDownT) {
        return silu(x.matMul(wGateT)).mul(x.matMul(wUpT)).matMul(wDownT);
    }

    /** {@link #swiglu} with weights held by {@code kernels} (in its dtype); x and the result are float32. */
    public static NDArray swiglu(NDArray x, NDArray wGateT, NDArray wUpT, NDArray wDownT, WeightKernels kernels) {
        return kernels.project(silu(kernels.project(x, wGateT)).mul(kernels.project(x, wUpT)), wDownT);
    }

    /**
     * {@link #swiglu} over a fused gate/up weight (hidden, 2m) and the down weight (m, hidden),
     * both transposed and held by {@code kernels}: one product for gate and up together.
     */
    public static NDArray fusedSwiglu(NDArray x, NDArray gateUpT, NDArray downT, WeightKernels kernels) {
        return kernels.project(gatedSilu(kernels.project(x, gateUpT)), downT);
    }

    /**
     * The SwiGLU activation of a fused gate/up projection: {@code SiLU(g) ⊙ u} where g and u are
     * the first and second halves of the last axis, so one product of the concatenated weights
     * replaces the two projections.
     *
     * @param gateUp (…, 2·inter)
     * @return (…, inter)
     */
    public static NDArray gatedSilu(NDArray gateUp) {
        long[] dims = gateUp.getShape().getShape();
        NDList halves = gateUp.split(new long[] {dims[dims.length - 1] / 2}, dims.length - 1);
        return silu(halves.get(0)).mul(halves.get(1));
    }

    /**
     * Rotary position embedding in the Hugging Face "rotate half" convention: the first and second
     * halves of each head vector form the (real, imaginary) pairs.
     *
     * @param x (…, heads, headDim)
     * @param cos (…, 1, headDim/2), broadcast over heads
     * @param sin (…, 1, headDim/2)
     */
    public static NDArray rope(NDArray x, NDArray cos, NDArray sin) {
        long half = x.getShape().getShape()[x.getShape().dimension() - 1] / 2;
        NDArray x1 = x.get(new NDIndex("..., :{}", half));
        NDArray x2 = x.get(new NDIndex("..., {}:", half));
        return x1.mul(cos).sub(x2.mul(sin)).concat(x2.mul(cos).add(x1.mul(sin)), -1);
    }

    /**
     * cos and sin tables of RoPE for every position, computed in double precision once.
     *
     * @return {cos, sin}, each (maxPositions, headDim/2)
     */
    public static NDArray[] ropeTables(NDManager manager, int maxPositions, int headDim, double theta) {
        int half = headDim / 2;
        float[] cos = new float[maxPositions * half];
        float[] sin = new float[maxPositions * half];
        for (int i = 0; i < half; i++) {
            double invFreq = 1.0 / Math.pow(theta, (2.0 * i) / headDim);
            for (int p = 0; p < maxPositions; p++) {
                double angle = p * invFreq;
                cos[p * half + i] = (float) Math.cos(angle);
                sin[p * half + i] = (float) Math.sin(angle);
            }
        }
        Shape s = new Shape(maxPositions, half);
        return new NDArray[] {manager.create(cos, s), manager.create(sin, s)};
    }

    /**
     * Additive attention mask for {@code queries} new tokens that follow {@code past} cached ones:
     * 0 where the key is visible (causal, and inside the sliding window when there is one), −∞
     * elsewhere.
     *
     * @return (queries, past + queries)
     */
    public static NDArray causalMask(NDManager manager, int past, int queries, int window) {
        int keys = past + queries;
        NDArray q = manager.arange(past, keys, 1, DataType.INT64).reshape(queries, 1);
        NDArray k = manager.arange(0, keys, 1, DataType.INT64).reshape(1, keys);
        NDArray visible = k.lte(q);
        if (window > 0) {
            visible = visible.logicalAnd(k.gt(q.sub(window)));
        }
        NDArray zeros = manager.zeros(new Shape(queries, keys));
        return NDArrays.where(visible, zeros, zeros.sub(Float.POSITIVE_INFINITY));
    }

    /**
     * Grouped-query attention of one sequence's new tokens against its whole key/value history.
     * Query heads are grouped by the key/value head they share (head h uses kv head h / group),
     * the Hugging Face {@code repeat_kv} order, so no key/value copy is made.
     *
     * @param q (n, heads, headDim)
     * @param k (keys, kvHeads, headDim)
     * @param v (keys, kvHeads, headDim)
     * @param mask (n, keys) additive, or null when every key is visible
     * @return (n, heads * headDim)
     */
    public static NDArray attention(NDArray q, NDArray k, NDArray v, NDArray mask) {
        long n = q.getShape().get(0);
        long heads = q.getShape().get(1);
        long headDim = q.getShape().get(2);
        long kvHeads = k.getShape().get(1);
        long keys = k.getShape().get(0);
        long group = heads / kvHeads;
        NDArray qg = q.reshape(n, kvHeads, group, headDim).transpose(1, 2, 0, 3).reshape(kvHeads, group * n, headDim);
        NDArray scores = qg.matMul(k.transpose(1, 2, 0)).mul(1.0 / Math.sqrt(headDim)); // (kvHeads, group*n, keys)
        if (mask != null) {
            scores = scores.reshape(kvHeads, group, n, keys).add(mask).reshape(kvHeads, group * n, keys);
        }
        NDArray out = scores.softmax(-1).matMul(v.transpose(1, 0, 2)); // (kvHeads, group*n, headDim)
        return out.reshape(kvHeads, group, n, headDim).transpose(2, 0, 1, 3).reshape(n, heads * headDim);
    }

    /**
     * Causal grouped-query self-attention over whole sequences, the training-time twin of
     * {@link #attention}: no cache, every sequence of the batch has the same length.
     *
     * @param q (batch, time, heads, headDim)
     * @param k (batch, time, kvHeads, headDim)
     * @param v (batch, time, kvHeads, headDim)
     * @param mask (time, time) additive causal mask
     * @return (batch, time, heads * headDim)
     */
    public static NDArray causalSelfAttention(NDArray q, NDArray k, NDArray v, NDArray mask) {
        Shape s = q.getShape();
        long b = s.get(0);
        long t = s.get(1);
        long heads = s.get(2);
        long headDim = s.get(3);
        long kvHeads = k.getShape().get(2);
        long group = heads / kvHeads;
        // repeat each kv head for its query group (HF repeat_kv): plain 4-D batched matmuls run
        // markedly faster on CPU than a 5-D broadcast over the group axis
        NDArray qh = q.transpose(0, 2, 1, 3);                                               // (b, h, t, d)
        NDArray kh = repeatKv(k.transpose(0, 2, 1, 3), group);                              // (b, h, t, d)
        NDArray vh = repeatKv(v.transpose(0, 2, 1, 3), group);
        NDArray scores = qh.matMul(kh.transpose(0, 1, 3, 2)).mul(1.0 / Math.sqrt(headDim)).add(mask);
        NDArray out = scores.softmax(-1).matMul(vh);                                        // (b, h, t, d)
        return out.transpose(0, 2, 1, 3).reshape(b, t, heads * headDim);
    }

    /** (b, kvHeads, t, d) → (b, kvHeads·group, t, d), each kv head repeated for its group of query heads. */
    private static NDArray repeatKv(NDArray x, long group) {
        if (group == 1) {
            return x;
        }
        Shape s = x.getShape();
        return x.expandDims(2).broadcast(new Shape(s.get(0), s.get(1), group, s.get(2), s.get(3)))
                .reshape(s.get(0), s.get(1) * group, s.get(2), s.get(3));
    }
}
