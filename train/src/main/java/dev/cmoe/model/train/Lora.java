package dev.cmoe.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.llama.Tensors;
import java.nio.FloatBuffer;
import java.util.Map;
import java.util.SplittableRandom;

/** What every LoRA adapter shares: A's initialisation, parameter naming, and input dropout. */
final class Lora {
    private Lora() {
    }

    /**
     * A of shape {@code dims} (…, rank, in), uniform in ±1/√in: PEFT's Kaiming-uniform (a = √5)
     * default. Drawn in Java so a seed gives the same adapters on every engine and thread count.
     */
    static NDArray initA(NDManager manager, SplittableRandom random, long... dims) {
        long in = dims[dims.length - 1];
        double bound = 1 / Math.sqrt(in);
        float[] v = new float[Math.toIntExact(new Shape(dims).size())];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) ((random.nextDouble() * 2 - 1) * bound);
        }
        return Tensors.create(manager, FloatBuffer.wrap(v), dims);
    }

    /** {@code model.layers.0.self_attn.q_proj.weight} → {@code model.layers.0.self_attn.q_proj}. */
    static String stem(String weightName) {
        return weightName.endsWith(".weight") ? weightName.substring(0, weightName.length() - ".weight".length())
                : weightName;
    }

    static void register(Map<String, NDArray> trainable, String name, NDArray p) {
        p.setRequiresGradient(true);
        if (trainable.put(name, p) != null) {
            throw new IllegalStateException("trainable parameter " + name + " registered twice");
        }
    }

    /** Inverted dropout of an adapter's input while training; the identity otherwise. */
    static NDArray dropout(NDArray x, double rate, boolean training) {
        if (!training || rate == 0) {
            return x;
        }
        return x.getNDArrayInternal().dropout(x, (float) rate, true).singletonOrThrow();
    }
}
