package dev.cmoe.experts.cluster;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.util.cuda.CudaUtils;
import dev.cmoe.model.EngineNatives;
import java.lang.management.MemoryUsage;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * One device of a worker as given on the command line ({@code cpu}, {@code gpu:0}, or its alias
 * {@code cuda:0}) with the DJL device it means; the name, always {@code cpu} or {@code gpu:N},
 * becomes the second half of the device id {@code WORKER/DEVICE}.
 */
public record DeviceSpec(String name, Device device) {

    /** Of a GPU's free memory, what expert weights may take when no budget is given: the rest is the engine's. */
    static final double GPU_SHARE = 0.9;

    /**
     * Parses {@code --devices}: {@code cpu}, or a comma-separated list of {@code gpu:N} (or
     * {@code cuda:N}). GPUs are checked against what the engine sees, so a typo or an engine
     * without CUDA fails at start, not at the first load.
     */
    public static List<DeviceSpec> parse(String devices) {
        if (devices == null || devices.isBlank()) {
            throw new IllegalArgumentException("--devices is empty; expected cpu or gpu:0,gpu:1,...");
        }
        List<DeviceSpec> out = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        for (String raw : devices.split(",")) {
            String d = raw.strip().toLowerCase(java.util.Locale.ROOT);
            if (d.matches("(cuda|gpu):\\d{1,9}")) {
                d = "gpu:" + Integer.parseInt(d.substring(d.indexOf(':') + 1)); // gpu:00 is gpu:0
            }
            if (!seen.add(d)) {
                throw new IllegalArgumentException("--devices lists " + d + " twice");
            }
            if (d.equals("cpu")) {
                out.add(new DeviceSpec("cpu", Device.cpu()));
            } else if (d.matches("gpu:\\d+")) {
                out.add(new DeviceSpec(d, Device.gpu(Integer.parseInt(d.substring(4)))));
            } else {
                throw new IllegalArgumentException("--devices entry \"" + raw.strip()
                        + "\" is neither cpu nor gpu:N (cuda:N)");
            }
        }
        // only a well-formed list asks the engine, whose first use loads it
        for (DeviceSpec d : out) {
            int gpus = d.device.isGpu() ? Engine.getInstance().getGpuCount() : 0;
            if (d.device.isGpu() && d.device.getDeviceId() >= gpus) {
                throw new IllegalArgumentException("--devices asks for " + d.name + " but the engine ("
                        + Engine.getInstance().getEngineName() + " " + Engine.getInstance().getVersion()
                        + ") sees " + gpus + " GPU(s)" + (gpus == 0 ? "; the PyTorch natives on the class path"
                        + " are CPU-only: set " + EngineNatives.ENV + " to a CUDA libtorch (docs/ARCHITECTURE.md,"
                        + " GPU workers)" : ""));
            }
        }
        return out;
    }

    /**
     * What this device may spend on expert weights: {@code perDevice} when given (&gt; 0); for a GPU
     * otherwise a share of the memory the device reports free; 0 (not limited) for the CPU.
     */
    public long memoryBudget(long perDevice) {
        if (perDevice > 0 || !device.isGpu()) {
            return perDevice;
        }
        MemoryUsage m = gpuMemory(device);
        return (long) ((m.getMax() - m.getUsed()) * GPU_SHARE);
    }

    /**
     * A GPU's memory as the CUDA runtime reports it: max is the total, used what is taken.
     *
     * @throws IllegalArgumentException when it cannot be read, naming the flag that sets a budget instead
     */
    public static MemoryUsage gpuMemory(Device gpu) {
        try {
            return CudaUtils.getGpuMemory(gpu);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("cannot read the free memory of gpu:" + gpu.getDeviceId() + " ("
                    + e.getMessage() + "; the JVM finds the CUDA runtime as libcudart.so): give --memory-per-device",
                    e);
        }
    }

    /** The id {@code WORKER/DEVICE} that placement plans use. */
    public String id(String worker) {
        return worker + "/" + name;
    }

    /** A name usable as an actor name. */
    public String actorName() {
        return "device-" + name.replace(':', '-');
    }
}
