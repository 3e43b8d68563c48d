package dev.cmoe.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.ToDoubleFunction;

/**
 * AdamW (Loshchilov &amp; Hutter): Adam moments with weight decay applied to the weights directly,
 * not through the gradient. DJL's Adam couples decay into the gradient, which is not what LLaMA
 * recipes use; this is a few in-place NDArray ops per parameter. Norm weights and biases are
 * not decayed.
 */
public final class AdamW implements AutoCloseable {
    private final NDManager manager = NDManager.newBaseManager();
    private final Map<String, NDArray> m = new LinkedHashMap<>(); // name -> first moment, parameter shape
    private final Map<String, NDArray> v = new LinkedHashMap<>(); // name -> second moment, parameter shape
    private final double beta1;
    private final double beta2;
    private final double eps;
    private final double weightDecay;
    private long step;

    public AdamW(double beta1, double beta2, double eps, double weightDecay) {
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
    }

    /** Steps taken so far (bias correction depends on it). */
    public long step() {
        return step;
    }

    /** Restores the moments and step count of a resumed run. */
    public void restore(long step, Map<String, NDArray> firstMoments, Map<String, NDArray> secondMoments) {
        this.step = step;
        firstMoments.forEach((k, a) -> m.put(k, persistent(a.duplicate())));
        secondMoments.forEach((k, a) -> v.put(k, persistent(a.duplicate())));
        m.values().forEach(a -> a.attach(manager));
        v.values().forEach(a -> a.attach(manager));
    }

    public Map<String, NDArray> firstMoments() {
        return m;
    }

    public Map<String, NDArray> secondMoments() {
        return v;
    }

    /**
     * Updates every parameter in place from its gradient, scaled by {@code gradScale} (gradient
     * clipping), at learning rate {@code lr}, then zeroes the gradients.
     */
    public void update(Map<String, NDArray> params, double lr, double gradScale) {
        update(params, name -> lr, gradScale);
    }

    /**
     * The same with a learning rate per parameter ({@code lr} maps a parameter name to its rate),
     * for parameter groups that train at different speeds, such as LoRA matrices and router scales.
     */
    public void update(Map<String, NDArray> params, ToDoubleFunction<String> lrOf, double gradScale) {
        step++;
        double c1 = 1 - Math.pow(beta1, step);
        double c2 = 1 - Math.pow(beta2, step);
        for (Map.Entry<String, NDArray> e : params.entrySet()) {
            String name = e.getKey();
            NDArray p = e.getValue();
            double lr = lrOf.applyAsDouble(name);
            try (NDManager tmp = manager.newSubManager()) {
                NDArray grad = p.getGradient();
                grad.attach(tmp);
                NDArray g = grad.mul(gradScale);
                g.attach(tmp);
                NDArray mt = m.computeIfAbsent(name, k -> persistent(manager.zeros(p.getShape())));
                NDArray vt = v.computeIfAbsent(name, k -> persistent(manager.zeros(p.getShape())));
                mt.muli(beta1).addi(g.mul(1 - beta1));
                vt.muli(beta2).addi(g.square().muli(1 - beta2));
                if (decays(name)) {
                    p.muli(1 - lr * weightDecay);
                }
                NDArray denom = vt.div(c2).sqrt().addi(eps);
                p.subi(mt.div(c1).divi(denom).muli(lr));
                clear(grad); // the engine accumulates gradients; start the next step from zero
            }
        }
    }

    /**
     * Sets a gradient to 0 in place. Written, not multiplied by 0: a NaN or infinite entry times 0
     * is still NaN and would poison every later step.
     */
    static void clear(NDArray gradient) {
        gradient.set(new NDIndex("..."), 0f);
    }

    /** Moments outlive the step's NDScope that may be open when they are first made. */
    private static NDArray persistent(NDArray a) {
        NDScope.unregister(a);
        return a;
    }

    /** Matrices decay; gains (norms) and biases do not. */
    static boolean decays(String name) {
        return !(name.endsWith("norm.weight") || name.endsWith(".bias"));
    }

    @Override
    public void close() {
        manager.close();
    }
}
