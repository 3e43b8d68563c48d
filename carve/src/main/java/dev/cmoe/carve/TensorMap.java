package dev.cmoe.carve;

import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Named float32 tensors held in memory: what carving produces for a layer. The same map loads
 * the in-memory MoE (as a {@link TensorSource}) and is written to model.safetensors, so the saved
 * model is the carved model by construction.
 */
final class TensorMap implements TensorSource {
    private final Map<String, SafetensorsWriter.Tensor> tensors = new LinkedHashMap<>(); // name -> shape + values

    void put(String name, float[] values, long... shape) {
        tensors.put(name, new SafetensorsWriter.Tensor(shape, java.nio.FloatBuffer.wrap(values)));
    }

    /** The values of {@code name} (shared: carving updates the bias in place before saving). */
    float[] values(String name) {
        SafetensorsWriter.Tensor t = tensors.get(name);
        if (t == null) {
            throw new IllegalArgumentException("no carved tensor " + name);
        }
        return t.data().array();
    }

    Map<String, SafetensorsWriter.Tensor> tensors() {
        return tensors;
    }

    @Override
    public java.nio.FloatBuffer read(String name, long... shape) {
        SafetensorsWriter.Tensor t = tensors.get(name);
        if (t == null) {
            throw new IllegalArgumentException("no carved tensor " + name);
        }
        if (!Arrays.equals(t.shape(), shape)) {
            throw new IllegalArgumentException("carved tensor " + name + " has shape " + Arrays.toString(t.shape())
                    + ", expected " + Arrays.toString(shape));
        }
        return t.data().duplicate();
    }
}
