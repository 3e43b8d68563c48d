package dev.cmoe.model.llama;

import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.RawTensor;
import java.nio.FloatBuffer;

/**
 * Where a model's named tensors come from: a checkpoint on disk, or tensors built in memory
 * (tests, carving). Implementations check the stored shape against the one the architecture
 * expects, so a wrong checkpoint fails at load time with the tensor's name, not mid-forward.
 */
public interface TensorSource {

    /** The tensor {@code name} as float32 values in row-major order; it must have {@code shape}. */
    FloatBuffer read(String name, long... shape);

    /**
     * The tensor's bytes at the dtype they are kept in, for loaders that hold weights in their
     * stored dtype; sources in memory hand out their float32 values.
     */
    default RawTensor raw(String name, long... shape) {
        return RawTensor.ofF32(name, read(name, shape), shape);
    }

    /** Reads tensors from {@code checkpoint}, checking each one's stored shape first. */
    static TensorSource of(Checkpoint checkpoint) {
        return new TensorSource() {
            @Override
            public FloatBuffer read(String name, long... shape) {
                checkpoint.require(name, shape);
                return checkpoint.readF32(name);
            }

            @Override
            public RawTensor raw(String name, long... shape) {
                checkpoint.require(name, shape);
                return checkpoint.readRaw(name);
            }
        };
    }
}
