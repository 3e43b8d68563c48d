package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * What the decoder's weights become as they are loaded: frozen engine tensors for inference
 * ({@link #frozen}), parameters for pretraining, frozen weights with adapters for adaptation. The
 * one decoder asks this for every tensor by its name and shape, so each use changes only this.
 */
public interface DecoderWeights {

    /** The manager that owns the weights. */
    NDManager manager();

    /** Where the tensors are read from. */
    TensorSource source();

    /** A plain float32 tensor (norm weight) of {@code shape}. */
    NDArray tensor(String name, long... shape);

    /** How the projection weights are held and multiplied. */
    default WeightKernels kernels() {
        return WeightKernels.f32();
    }

    /** The embedding table (vocab, hidden), held in {@link #kernels()}' dtype; rows come out as float32. */
    default NDArray table(String name, long... shape) {
        return tensor(name, shape);
    }

    /** The projection of weight {@code name} (out, in), with bias {@code biasName} (out) unless it is null. */
    Linear linear(String name, String biasName, int out, int in);

    /** The LM head of a model with tied embeddings: logits = x·embedᵀ. */
    Linear tied(NDArray embed);

    /** Inference weights in float32: every tensor copied into {@code manager}, projections as transposed views. */
    static DecoderWeights frozen(NDManager manager, TensorSource source) {
        return new Frozen(manager, source, WeightKernels.f32());
    }

    /**
     * Inference weights whose projections and embedding table are held by {@code kernels} (in its
     * dtype); norms and biases are float32, as the activations they act on.
     */
    static DecoderWeights frozen(NDManager manager, TensorSource source, WeightKernels kernels) {
        return new Frozen(manager, source, kernels);
    }

    /** See {@link #frozen}. */
    record Frozen(NDManager manager, TensorSource source, WeightKernels kernels) implements DecoderWeights {
        @Override
        public NDArray tensor(String name, long... shape) {
            return Tensors.load(manager, source, name, shape);
        }

        @Override
        public NDArray table(String name, long... shape) {
            return kernels.load(manager, source, name, shape);
        }

        @Override
        public Linear linear(String name, String biasName, int out, int in) {
            NDArray wT = Tensors.transposedView(kernels.load(manager, source, name, out, in));
            return Linear.frozen(wT, biasName == null ? null : Tensors.load(manager, source, biasName, out), kernels);
        }

        @Override
        public Linear tied(NDArray embed) {
            return Linear.frozen(embed.transpose(), null, kernels);
        }
    }
}
