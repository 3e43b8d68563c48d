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

    /** A plain tensor (embedding matrix, norm weight) of {@code shape}. */
    NDArray tensor(String name, long... shape);

    /** The projection of weight {@code name} (out, in), with bias {@code biasName} (out) unless it is null. */
    Linear linear(String name, String biasName, int out, int in);

    /** The LM head of a model with tied embeddings: logits = x·embedᵀ. */
    Linear tied(NDArray embed);

    /** Inference weights: every tensor copied into {@code manager}, projections as transposed views. */
    static DecoderWeights frozen(NDManager manager, TensorSource source) {
        return new Frozen(manager, source);
    }

    /** See {@link #frozen}. */
    record Frozen(NDManager manager, TensorSource source) implements DecoderWeights {
        @Override
        public NDArray tensor(String name, long... shape) {
            return Tensors.load(manager, source, name, shape);
        }

        @Override
        public Linear linear(String name, String biasName, int out, int in) {
            NDArray wT = Tensors.transposedView(Tensors.load(manager, source, name, out, in));
            return Linear.frozen(wT, biasName == null ? null : Tensors.load(manager, source, biasName, out));
        }

        @Override
        public Linear tied(NDArray embed) {
            return Linear.frozen(embed.transpose(), null);
        }
    }
}
