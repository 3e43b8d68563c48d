package dev.cmoe.model;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import java.util.Objects;

/**
 * What {@link ModelDir#open(java.nio.file.Path, LoadSpec)} loads, onto which device and in which
 * dtype: the one place those are decided. Who asks for what is the caller's business: a tool that
 * runs the model in-process loads everything; a server or cluster head whose routed experts live
 * in expert actors loads attention, norms, embeddings, shared experts and routers only, so no
 * process holds a routed expert it does not serve (the expert actors read theirs themselves).
 *
 * @param routed where a carved model's routed experts run; ignored for a dense model
 * @param device where the loaded tensors live
 * @param dtype the dtype of the loaded tensors (float32: the engine computes in it)
 */
public record LoadSpec(RoutedExperts routed, Device device, DataType dtype) {

    /** Where a carved layer's routed experts run. */
    public enum RoutedExperts {
        /** Loaded here; the layer's FFN is the in-process mixture. */
        IN_PROCESS,
        /**
         * Not loaded: the layer keeps its router and shared expert, and the routed part is served by
         * expert actors that the server installs before the first step.
         */
        SERVED_BY_ACTORS
    }

    public LoadSpec {
        Objects.requireNonNull(routed, "routed");
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(dtype, "dtype");
        if (dtype != DataType.FLOAT32) {
            throw new IllegalArgumentException("dtype " + dtype + " is not supported yet: weights are computed in "
                    + "float32");
        }
        if (!Device.Type.CPU.equals(device.getDeviceType())) {
            throw new IllegalArgumentException("device " + device + ": the decoder runs on the CPU; experts go to "
                    + "other devices through expert workers");
        }
    }

    /** Everything, on the CPU, in float32: what eval-ppl, generate and carving use. */
    public static LoadSpec full() {
        return new LoadSpec(RoutedExperts.IN_PROCESS, Device.cpu(), DataType.FLOAT32);
    }

    /** Everything but the routed experts: what a server or cluster head of a carved model loads. */
    public static LoadSpec withoutRoutedExperts() {
        return new LoadSpec(RoutedExperts.SERVED_BY_ACTORS, Device.cpu(), DataType.FLOAT32);
    }
}
