package dev.cmoe.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.llama.Linear;
import dev.cmoe.model.llama.Tensors;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.UnaryOperator;

/**
 * One frozen linear layer with a trainable LoRA adapter: y = x·Wᵀ + (alpha/r)·x̃·Aᵀ·Bᵀ, where x̃
 * is x after dropout while training.
 * B starts at zero, so a fresh adapter leaves the layer exactly as it was; {@link #merged} folds
 * the adapter into W for a plain checkpoint.
 */
final class LoraLinear implements Linear {
    private final String name;  // the Hugging Face weight name, e.g. model.layers.0.self_attn.q_proj.weight
    private final NDArray wT;   // (in, out) frozen, a transposed view of W
    private final NDArray a;    // (rank, in) trainable
    private final NDArray b;    // (out, rank) trainable
    private final LoraSpec spec;
    private final UnaryOperator<NDArray> dropout; // x as the adapter sees it, when called as a Linear

    /**
     * Takes ownership of {@code w} (out, in) and registers the adapter's A and B in
     * {@code trainable} as {@code NAME.lora_A} / {@code NAME.lora_B} (NAME without ".weight").
     */
    LoraLinear(String name, NDArray w, LoraSpec spec, SplittableRandom random, Map<String, NDArray> trainable) {
        this(name, w, spec, random, trainable, UnaryOperator.identity());
    }

    /** As above; {@link #apply} passes its input through {@code dropout} for the adapter. */
    LoraLinear(String name, NDArray w, LoraSpec spec, SplittableRandom random, Map<String, NDArray> trainable,
               UnaryOperator<NDArray> dropout) {
        this.name = name;
        this.dropout = dropout;
        this.spec = spec;
        long out = w.getShape().get(0);
        long in = w.getShape().get(1);
        NDManager manager = w.getManager();
        this.wT = Tensors.transposedView(w);
        this.a = Lora.initA(manager, random, spec.rank(), in);
        this.b = manager.zeros(new Shape(out, spec.rank()));
        String stem = Lora.stem(name);
        Lora.register(trainable, stem + ".lora_A", a);
        Lora.register(trainable, stem + ".lora_B", b);
    }

    /**
     * x: (…, in) → (…, out).
     *
     * @param dropped x as the adapter sees it: x itself, or x after dropout while training
     */
    NDArray forward(NDArray x, NDArray dropped) {
        NDArray adapter = dropped.matMul(a.transpose()).matMul(b.transpose());
        return x.matMul(wT).add(adapter.mul(spec.scale()));
    }

    @Override
    public NDArray apply(NDArray x) {
        return forward(x, dropout.apply(x));
    }

    String name() {
        return name;
    }

    /** W as loaded, (out, in): the adapter never changes it. */
    float[] base() {
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            return wT.transpose().toFloatArray();
        }
    }

    /** W + (alpha/r)·B·A, (out, in). */
    float[] merged() {
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            return wT.transpose().add(b.matMul(a).mul(spec.scale())).toFloatArray();
        }
    }

    long[] shape() {
        return new long[] {wT.getShape().get(1), wT.getShape().get(0)};
    }
}
