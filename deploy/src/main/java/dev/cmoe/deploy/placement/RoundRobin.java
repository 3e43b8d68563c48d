package dev.cmoe.deploy.placement;

import dev.cmoe.experts.placement.PlacementPlan;
import java.util.ArrayList;
import java.util.List;

/**
 * The placement one gets without a planner: experts in (layer, expert) order dealt to the
 * devices in turn, one replica each, memory ignored. The baseline {@code cmoe plan} reports against.
 */
public final class RoundRobin {
    private RoundRobin() {
    }

    /** Expert (l, e) on device (l·experts + e) mod devices. */
    public static PlacementPlan plan(int layers, int experts, List<PlacementPlan.Device> devices) {
        List<PlacementPlan.Assignment> assignments = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            for (int e = 0; e < experts; e++) {
                String device = devices.get((l * experts + e) % devices.size()).id();
                assignments.add(new PlacementPlan.Assignment(l, e, List.of(device), 0));
            }
        }
        return new PlacementPlan(PlacementPlan.VERSION, layers, experts, devices, assignments);
    }
}
