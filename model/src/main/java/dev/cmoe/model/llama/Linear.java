package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;

/**
 * A projection {@code x·Wᵀ (+ b)} of the decoder. Inference holds W as a frozen transposed view;
 * training holds it as a parameter or adds a LoRA adapter: the decoder's layer code is the same
 * for all of them, only what stands behind this interface changes.
 */
public interface Linear {

    /** x: (…, in) → (…, out). */
    NDArray apply(NDArray x);

    /** Frees the weights this projection owns (a replaced FFN's, say); parameters stay with their trainer. */
    default void close() {
    }

    /** An inference projection over float32 {@code wT} (in, out), a transposed view, and an optional bias (out). */
    static Linear frozen(NDArray wT, NDArray bias) {
        return new Frozen(wT, bias, WeightKernels.f32());
    }

    /** An inference projection over {@code wT} held in {@code kernels}' dtype; the bias is float32. */
    static Linear frozen(NDArray wT, NDArray bias, WeightKernels kernels) {
        return new Frozen(wT, bias, kernels);
    }

    /**
     * A projection that transposes W (out, in) on every call, so that autograd sees the weight
     * itself: the training form of {@link #frozen}.
     */
    static Linear parameter(NDArray w, NDArray bias) {
        return new Parameter(w, bias);
    }

    /** See {@link #frozen}. */
    record Frozen(NDArray wT, NDArray bias, WeightKernels kernels) implements Linear {
        @Override
        public NDArray apply(NDArray x) {
            NDArray y = kernels.project(x, wT);
            return bias == null ? y : y.add(bias);
        }

        @Override
        public void close() {
            wT.close();
            if (bias != null) {
                bias.close();
            }
        }
    }

    /** See {@link #parameter}. */
    record Parameter(NDArray w, NDArray bias) implements Linear {
        @Override
        public NDArray apply(NDArray x) {
            NDArray y = x.matMul(w.transpose());
            return bias == null ? y : y.add(bias);
        }
    }
}
