package dev.cmoe.deploy.placement;

import dev.cmoe.experts.placement.Bytes;
import dev.cmoe.experts.placement.PlacementPlan;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/** Parses {@code --devices w1/gpu:0,w1/gpu:1=24GiB,w2/cpu}: device ids with optional per-device memory budgets. */
public final class DeviceList {
    private DeviceList() {
    }

    /**
     * @param spec comma-separated {@code WORKER/DEVICE} ids, each optionally {@code =SIZE}
     * @param defaultMemory budget of devices without {@code =SIZE}; 0 = not limited
     */
    public static List<PlacementPlan.Device> parse(String spec, long defaultMemory) {
        if (defaultMemory < 0) {
            throw new IllegalArgumentException("--memory-per-device must be ≥ 0, got " + defaultMemory);
        }
        List<PlacementPlan.Device> devices = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        for (String part : spec.split(",", -1)) {
            String item = part.strip();
            if (item.isEmpty()) {
                throw new IllegalArgumentException("--devices '" + spec + "' has an empty entry");
            }
            String id = item;
            long memory = defaultMemory;
            int eq = item.indexOf('=');
            if (eq >= 0) {
                id = item.substring(0, eq).strip();
                memory = Bytes.parse(item.substring(eq + 1));
            }
            if (!id.matches("[^/\\s=,]+/[^/\\s=,]+")) {
                throw new IllegalArgumentException("--devices entry '" + item
                        + "' is not WORKER/DEVICE (e.g. worker-1/gpu:0 or worker-2/cpu)");
            }
            if (!seen.add(id)) {
                throw new IllegalArgumentException("--devices lists " + id + " twice");
            }
            devices.add(new PlacementPlan.Device(id, memory));
        }
        return devices;
    }
}
