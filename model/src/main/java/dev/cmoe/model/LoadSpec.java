package dev.cmoe.model;

import ai.djl.Device;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.SafetensorsException;
import java.util.Arrays;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * What {@link ModelDir#open(java.nio.file.Path, LoadSpec)} loads, onto which device and in which
 * dtype: the one place those are decided. Who asks for what is the caller's business: a tool that
 * runs the model in-process loads everything; a server or cluster head whose routed experts live
 * in expert actors loads attention, norms, embeddings, shared experts and routers only, so no
 * process holds a routed expert it does not serve (the expert actors read theirs themselves).
 *
 * @param routed where a carved model's routed experts run; ignored for a dense model
 * @param device where the loaded tensors live
 * @param dtype the dtype the projection weights are held and multiplied in; empty for the
 *     checkpoint's own ({@code torch_dtype}, which must agree with the stored tensors)
 */
public record LoadSpec(RoutedExperts routed, Device device, Optional<DType> dtype) {

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
        if (!Device.Type.CPU.equals(device.getDeviceType())) {
            throw new IllegalArgumentException("device " + device + ": the decoder runs on the CPU; experts go to "
                    + "other devices through expert workers");
        }
    }

    /** Everything, on the CPU, in the checkpoint's dtype: what eval-ppl, generate and carving use. */
    public static LoadSpec full() {
        return new LoadSpec(RoutedExperts.IN_PROCESS, Device.cpu(), Optional.empty());
    }

    /** Everything but the routed experts: what a server or cluster head of a carved model loads. */
    public static LoadSpec withoutRoutedExperts() {
        return new LoadSpec(RoutedExperts.SERVED_BY_ACTORS, Device.cpu(), Optional.empty());
    }

    /** This spec with the dtype {@code choice} names; see {@link #parseDtype}. */
    public LoadSpec withDtype(String choice) {
        return new LoadSpec(routed, device, parseDtype(choice));
    }

    /** This spec computing in {@code dtype}. */
    public LoadSpec withDtype(DType dtype) {
        return new LoadSpec(routed, device, Optional.of(dtype));
    }

    /**
     * The command line's {@code --dtype}: {@code auto} (the checkpoint's own) or one of
     * bf16/f16/f32 (also their torch names, bfloat16/float16/float32).
     *
     * @throws IllegalArgumentException naming the value and the choices
     */
    public static Optional<DType> parseDtype(String choice) {
        String c = choice.trim().toLowerCase(Locale.ROOT);
        if (c.equals("auto")) {
            return Optional.empty();
        }
        return Optional.of(DType.named(c).orElseThrow(() -> new IllegalArgumentException("dtype '" + choice
                + "' is not one this engine computes in: choose auto, "
                + Arrays.stream(DType.values()).map(DType::shortName).collect(Collectors.joining(", ")))));
    }

    /**
     * The dtype to compute {@code checkpoint} in: the chosen one, or the stored one. The stored
     * dtype must be single and agree with config.json's {@code torch_dtype} when it names one.
     *
     * @throws SafetensorsException naming the tensor whose dtype disagrees
     */
    public DType resolveDtype(ModelConfig config, Checkpoint checkpoint) {
        DType stored = checkpoint.dtype();
        Optional<String> declared = config.torchDtype();
        if (declared.isPresent()) {
            Optional<DType> d = DType.named(declared.get());
            if (d.isEmpty()) {
                throw new IllegalArgumentException("config.json: torch_dtype '" + declared.get()
                        + "' is not a dtype this engine loads (bfloat16, float16, float32)");
            }
            if (d.get() != stored) {
                String first = checkpoint.names().iterator().next();
                throw new SafetensorsException("config.json says torch_dtype " + declared.get() + " but tensor '"
                        + first + "' (like every tensor of " + checkpoint.dir() + ") is stored as " + stored);
            }
        }
        return dtype.orElse(stored);
    }
}
