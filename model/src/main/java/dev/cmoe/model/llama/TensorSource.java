package dev.cmoe.model.llama;

import dev.cmoe.model.safetensors.Checkpoint;
import java.nio.FloatBuffer;

/**
 * Where a model's named tensors come from: a checkpoint on disk, or tensors built in memory
 * (tests, carving). Implementations check the stored shape against the one the architecture
 * expects, so a wrong checkpoint fails at load time with the tensor's name, not mid-forward.
 */
@FunctionalInterface
public interface TensorSource {

    /** The tensor {@code name} as float32 values in row-major order; it must have {@code shape}. */
    FloatBuffer read(String name, long... shape);

    /** Reads tensors from {@code checkpoint}, checking each one's stored shape first. */
    static TensorSource of(Checkpoint checkpoint) {
        return (name, shape) -> {
            checkpoint.require(name, shape);
            return checkpoint.readF32(name);
        };
    }
}
