package dev.cmoe.experts.placement;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Load-aware expert placement, the EPLB approach: replicate the hottest experts into spare
 * slots ({@link ReplicaCounts}), then pack the replicas onto devices so each layer's busiest
 * device carries as little as possible ({@link Packing}), within device memory. The result is a
 * {@link PlacementPlan} that {@code cmoe serve --plan} accepts and an operator may edit.
 */
public final class Planner {
    private Planner() {
    }

    /**
     * What to plan for.
     *
     * @param devices the devices with their memory budgets (0 = not limited)
     * @param spareSlots replicas beyond one per expert
     * @param slotsPerDevice the most replicas one device may hold; 0 = limited by memory only
     */
    public record Request(List<PlacementPlan.Device> devices, int spareSlots, int slotsPerDevice) {
        public Request {
            devices = List.copyOf(devices);
        }
    }

    /** Places {@code loads.layers() × loads.experts()} routed experts. */
    public static PlacementPlan plan(ExpertLoads loads, ExpertMemory memory, Request request) {
        if (memory.layers() != loads.layers() || memory.experts() != loads.experts()) {
            throw new IllegalArgumentException("loads cover " + loads.layers() + " × " + loads.experts()
                    + " experts but the checkpoint has " + memory.layers() + " × " + memory.experts());
        }
        List<PlacementPlan.Device> devices = request.devices();
        if (devices.isEmpty()) {
            throw new IllegalArgumentException("no devices to place experts on");
        }
        Set<String> ids = new HashSet<>();
        for (PlacementPlan.Device d : devices) {
            if (!ids.add(d.id())) {
                throw new IllegalArgumentException("device " + d.id() + " is listed twice");
            }
        }
        if (request.slotsPerDevice() < 0) {
            throw new IllegalArgumentException("slots per device must be ≥ 0, got " + request.slotsPerDevice());
        }
        int n = devices.size();
        long[] memoryCap = new long[n];
        int[] slotCap = new int[n];
        for (int d = 0; d < n; d++) {
            long m = devices.get(d).memoryBytes();
            memoryCap[d] = m == 0 ? Long.MAX_VALUE : m;
            slotCap[d] = request.slotsPerDevice() == 0 ? Integer.MAX_VALUE : request.slotsPerDevice();
        }
        int[][] maxReplicas = maxReplicas(memory, memoryCap, slotCap, devices);
        int[][] replicas = ReplicaCounts.allocate(loads, request.spareSlots(), maxReplicas);
        requireCapacity(memory, replicas, devices, memoryCap, slotCap, request);
        int[][][] hosts = new Packing(loads, memory, replicas, memoryCap, slotCap).pack().hosts();

        List<PlacementPlan.Assignment> assignments = new ArrayList<>();
        for (int l = 0; l < loads.layers(); l++) {
            for (int e = 0; e < loads.experts(); e++) {
                List<String> on = new ArrayList<>();
                for (int d : hosts[l][e]) {
                    on.add(devices.get(d).id());
                }
                // six decimals keep the file readable; the load is informational for operators
                double share = Math.round(loads.share(l, e) * 1e6) / 1e6;
                assignments.add(new PlacementPlan.Assignment(l, e, on, share));
            }
        }
        return new PlacementPlan(PlacementPlan.VERSION, loads.layers(), loads.experts(), devices, assignments);
    }

    /** The devices each expert fits on alone; an expert that fits nowhere is an error. */
    private static int[][] maxReplicas(ExpertMemory memory, long[] memoryCap, int[] slotCap,
                                       List<PlacementPlan.Device> devices) {
        int[][] max = new int[memory.layers()][memory.experts()];
        long largest = 0;
        for (long cap : memoryCap) {
            largest = Math.max(largest, cap);
        }
        for (int l = 0; l < memory.layers(); l++) {
            for (int e = 0; e < memory.experts(); e++) {
                for (int d = 0; d < memoryCap.length; d++) {
                    if (slotCap[d] > 0 && memory.of(l, e) <= memoryCap[d]) {
                        max[l][e]++;
                    }
                }
                if (max[l][e] == 0) {
                    throw new IllegalArgumentException("expert (" + l + ", " + e + ") needs "
                            + Bytes.format(memory.of(l, e)) + " but the largest device budget is "
                            + Bytes.format(largest) + " (" + devices.size() + " devices)");
                }
            }
        }
        return max;
    }

    /** Fails, saying by how much, when the replicas need more memory or slots than the devices have. */
    private static void requireCapacity(ExpertMemory memory, int[][] replicas, List<PlacementPlan.Device> devices,
                                        long[] memoryCap, int[] slotCap, Request request) {
        long need = 0;
        long count = 0;
        for (int l = 0; l < memory.layers(); l++) {
            for (int e = 0; e < memory.experts(); e++) {
                need += replicas[l][e] * memory.of(l, e);
                count += replicas[l][e];
            }
        }
        long have = 0;
        long slots = 0;
        for (int d = 0; d < memoryCap.length; d++) {
            have = memoryCap[d] == Long.MAX_VALUE || have == Long.MAX_VALUE ? Long.MAX_VALUE : have + memoryCap[d];
            slots = slotCap[d] == Integer.MAX_VALUE || slots == Long.MAX_VALUE ? Long.MAX_VALUE : slots + slotCap[d];
        }
        String what = count + " expert replicas (" + memory.layers() + " layers × " + memory.experts()
                + " experts + " + request.spareSlots() + " spare)";
        if (need > have) {
            throw new IllegalArgumentException("experts do not fit: " + what + " need " + Bytes.format(need)
                    + " but the " + devices.size() + " devices have " + Bytes.format(have)
                    + " in all; raise --memory-per-device, add devices or use fewer spare slots");
        }
        if (count > slots) {
            throw new IllegalArgumentException("experts do not fit: " + what + " need " + count + " slots but the "
                    + devices.size() + " devices have " + slots + " (" + request.slotsPerDevice() + " each)");
        }
    }
}
