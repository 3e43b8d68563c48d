package dev.cmoe.carve;

import dev.cmoe.model.llama.TensorSource;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;

/**
 * Named float32 tensors of one carved layer: what carving produces. The same map loads the
 * in-memory MoE (as a {@link TensorSource}) and is written to the checkpoint, so the saved model
 * is the carved model by construction. A tensor is either stored (the router's, which carving
 * updates in place) or cut from the dense weights again at every read (the experts'), so that a
 * layer being carved holds its FFN weights once, not a second time in carved order.
 */
final class TensorMap implements TensorSource {
    private record Entry(long[] shape, float[] stored, Supplier<float[]> cut) {
        float[] values() {
            return stored != null ? stored : cut.get();
        }
    }

    private final Map<String, Entry> tensors = new LinkedHashMap<>();

    /** Stores {@code values} as tensor {@code name}. */
    void put(String name, float[] values, long... shape) {
        tensors.put(name, new Entry(shape, values, null));
    }

    /** Tensor {@code name}, made by {@code cut} whenever it is read; {@code cut} must give the same values each time. */
    void putCut(String name, Supplier<float[]> cut, long... shape) {
        tensors.put(name, new Entry(shape, null, cut));
    }

    /** The stored values of {@code name} (shared: carving updates the bias in place before saving). */
    float[] values(String name) {
        Entry e = entry(name);
        if (e.stored() == null) {
            throw new IllegalArgumentException("carved tensor " + name + " is cut at each read, not stored");
        }
        return e.stored();
    }

    /** The tensors' names in the order they were put. */
    Set<String> names() {
        return tensors.keySet();
    }

    /** The values of {@code name}, whatever its shape. */
    FloatBuffer read(String name) {
        return FloatBuffer.wrap(entry(name).values());
    }

    @Override
    public FloatBuffer read(String name, long... shape) {
        Entry e = entry(name);
        if (!Arrays.equals(e.shape(), shape)) {
            throw new IllegalArgumentException("carved tensor " + name + " has shape " + Arrays.toString(e.shape())
                    + ", expected " + Arrays.toString(shape));
        }
        return FloatBuffer.wrap(e.values());
    }

    private Entry entry(String name) {
        Entry e = tensors.get(name);
        if (e == null) {
            throw new IllegalArgumentException("no carved tensor " + name);
        }
        return e;
    }
}
