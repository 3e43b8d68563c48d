package dev.cmoe.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.moe.MoeWeightNames;
import java.nio.FloatBuffer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The N_r routed experts of one carved layer, frozen, each with a LoRA adapter on its gate, up
 * and down projection, stacked so that training runs them as a few large matrix products.
 *
 * <p>Training computes every routed expert on every token and weighs each token's expert outputs
 * by its gates, zero on the experts it did not select: the result is exactly the sparse mixture,
 * and gradients reach only the selected experts. Measured on the shipped model carved S3A3E8
 * (batch 2 × 256, alternating steps in one process), this dense-masked form took about half the
 * time per step of gathering each expert's rows, running it and gathering the outputs back: at
 * this size a few large products beat many small ones plus the index copies.
 */
final class RoutedExperts {
    private final int layer;
    private final int nRouted;
    private final int size;       // m, neurons per expert
    private final LoraSpec spec;
    private final NDArray gateT;  // (hidden, N_r·m) frozen: expert j owns columns j·m … (j+1)·m − 1
    private final NDArray upT;    // (hidden, N_r·m)
    private final NDArray downT;  // (N_r·m, hidden)
    private final NDArray gateA;  // (N_r, rank, hidden)
    private final NDArray gateB;  // (N_r, m, rank)
    private final NDArray upA;    // (N_r, rank, hidden)
    private final NDArray upB;    // (N_r, m, rank)
    private final NDArray downA;  // (N_r, rank, m)
    private final NDArray downB;  // (N_r, hidden, rank)

    RoutedExperts(NDManager manager, TensorSource source, int layer, int nRouted, int size, int hidden,
                  LoraSpec spec, SplittableRandom random, Map<String, NDArray> trainable) {
        this.layer = layer;
        this.nRouted = nRouted;
        this.size = size;
        this.spec = spec;
        int block = size * hidden;
        float[] gate = new float[nRouted * block];
        float[] up = new float[nRouted * block];
        float[] down = new float[nRouted * block]; // stacked transposes: (N_r·m, hidden)
        for (int j = 0; j < nRouted; j++) {
            source.read(MoeWeightNames.expert(layer, j, MoeWeightNames.GATE), size, hidden).get(gate, j * block, block);
            source.read(MoeWeightNames.expert(layer, j, MoeWeightNames.UP), size, hidden).get(up, j * block, block);
            FloatBuffer d = source.read(MoeWeightNames.expert(layer, j, MoeWeightNames.DOWN), hidden, size);
            for (int o = 0; o < hidden; o++) {
                for (int i = 0; i < size; i++) {
                    down[j * block + i * hidden + o] = d.get(o * size + i);
                }
            }
        }
        long rows = (long) nRouted * size;
        gateT = Tensors.transposedView(Tensors.create(manager, FloatBuffer.wrap(gate), rows, hidden));
        upT = Tensors.transposedView(Tensors.create(manager, FloatBuffer.wrap(up), rows, hidden));
        downT = Tensors.create(manager, FloatBuffer.wrap(down), rows, hidden);
        int r = spec.rank();
        gateA = Lora.initA(manager, random, nRouted, r, hidden);
        gateB = manager.zeros(new Shape(nRouted, size, r));
        upA = Lora.initA(manager, random, nRouted, r, hidden);
        upB = manager.zeros(new Shape(nRouted, size, r));
        downA = Lora.initA(manager, random, nRouted, r, size);
        downB = manager.zeros(new Shape(nRouted, hidden, r));
        String p = MoeWeightNames.mlp(layer) + "experts.";
        Lora.register(trainable, p + MoeWeightNames.GATE + ".lora_A", gateA);
        Lora.register(trainable, p + MoeWeightNames.GATE + ".lora_B", gateB);
        Lora.register(trainable, p + MoeWeightNames.UP + ".lora_A", upA);
        Lora.register(trainable, p + MoeWeightNames.UP + ".lora_B", upB);
        Lora.register(trainable, p + MoeWeightNames.DOWN + ".lora_A", downA);
        Lora.register(trainable, p + MoeWeightNames.DOWN + ".lora_B", downB);
    }

    /**
     * Σ_j w_j · expert_j(x) over all routed experts at once.
     *
     * @param x (N, hidden)
     * @param dropped x as the gate and up adapters see it (after dropout while training)
     * @param w (N, N_r) each token's output weight per expert: g on its selected experts, 0 elsewhere
     * @return (N, hidden)
     */
    NDArray forward(NDArray x, NDArray dropped, NDArray w, boolean training) {
        long n = x.getShape().get(0);
        NDArray gate = x.matMul(gateT).add(adapter(dropped, gateA, gateB));
        NDArray up = x.matMul(upT).add(adapter(dropped, upA, upB));
        NDArray h = Ops.silu(gate).mul(up).reshape(n, nRouted, size).mul(w.expandDims(-1)); // (N, N_r, m)
        NDArray out = h.reshape(n, (long) nRouted * size).matMul(downT);
        NDArray hd = Lora.dropout(h, spec.dropout(), training).transpose(1, 0, 2);        // (N_r, N, m)
        NDArray delta = hd.matMul(downA.transpose(0, 2, 1)).matMul(downB.transpose(0, 2, 1)).sum(new int[] {0});
        return out.add(delta.mul(spec.scale()));
    }

    /** Every expert's adapter on the same input: x (N, in), A (N_r, r, in), B (N_r, out, r) → (N, N_r·out). */
    private NDArray adapter(NDArray x, NDArray a, NDArray b) {
        long n = x.getShape().get(0);
        long r = a.getShape().get(1);
        long in = a.getShape().get(2);
        long out = b.getShape().get(1);
        NDArray xa = x.matMul(a.reshape(nRouted * r, in).transpose()).reshape(n, nRouted, r).transpose(1, 0, 2);
        NDArray y = xa.matMul(b.transpose(0, 2, 1));                                        // (N_r, N, out)
        return y.transpose(1, 0, 2).reshape(n, nRouted * out).mul(spec.scale());
    }

    /**
     * Every expert's gate, up and down weight by checkpoint name, either as loaded or with the
     * adapters folded in: W_j + (alpha/r)·B_j·A_j.
     */
    Map<String, float[]> weights(boolean merge) {
        Map<String, float[]> out = new LinkedHashMap<>();
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            long hidden = gateT.getShape().get(0);
            NDArray gate = gateT.transpose().reshape(nRouted, size, hidden);      // (N_r, m, hidden)
            NDArray up = upT.transpose().reshape(nRouted, size, hidden);
            NDArray down = downT.reshape(nRouted, size, hidden).transpose(0, 2, 1); // (N_r, hidden, m)
            if (merge) {
                gate = gate.add(gateB.matMul(gateA).mul(spec.scale()));
                up = up.add(upB.matMul(upA).mul(spec.scale()));
                down = down.add(downB.matMul(downA).mul(spec.scale()));
            }
            for (int j = 0; j < nRouted; j++) {
                out.put(MoeWeightNames.expert(layer, j, MoeWeightNames.GATE), gate.get(j).toFloatArray());
                out.put(MoeWeightNames.expert(layer, j, MoeWeightNames.UP), up.get(j).toFloatArray());
                out.put(MoeWeightNames.expert(layer, j, MoeWeightNames.DOWN), down.get(j).toFloatArray());
            }
        }
        return out;
    }
}
