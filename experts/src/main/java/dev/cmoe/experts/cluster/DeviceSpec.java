package dev.cmoe.experts.cluster;

import ai.djl.Device;
import ai.djl.engine.Engine;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * One device of a worker as given on the command line ({@code cpu}, {@code gpu:0}) with the DJL
 * device it means; the name becomes the second half of the device id {@code WORKER/DEVICE}.
 */
public record DeviceSpec(String name, Device device) {

    /**
     * Parses {@code --devices}: {@code cpu}, or a comma-separated list of {@code gpu:N}. GPUs are
     * checked against what the engine sees, so a typo fails at start, not at the first load.
     */
    public static List<DeviceSpec> parse(String devices) {
        if (devices == null || devices.isBlank()) {
            throw new IllegalArgumentException("--devices is empty; expected cpu or gpu:0,gpu:1,...");
        }
        List<DeviceSpec> out = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        for (String raw : devices.split(",")) {
            String d = raw.strip().toLowerCase(java.util.Locale.ROOT);
            if (!seen.add(d)) {
                throw new IllegalArgumentException("--devices lists " + d + " twice");
            }
            if (d.equals("cpu")) {
                out.add(new DeviceSpec("cpu", Device.cpu()));
            } else if (d.matches("gpu:\\d+")) {
                int id = Integer.parseInt(d.substring(4));
                int gpus = Engine.getInstance().getGpuCount();
                if (id >= gpus) {
                    throw new IllegalArgumentException("--devices asks for " + d + " but the engine ("
                            + Engine.getInstance().getEngineName() + ") sees " + gpus + " GPU(s)");
                }
                out.add(new DeviceSpec(d, Device.gpu(id)));
            } else {
                throw new IllegalArgumentException("--devices entry \"" + raw.strip()
                        + "\" is neither cpu nor gpu:N");
            }
        }
        return out;
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
