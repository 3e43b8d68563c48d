package dev.cmoe.experts.placement;

import java.util.List;

/**
 * How evenly a plan spreads the expected work, for any plan (the planner's, round-robin's, an
 * operator's edit): the figures {@code cmoe plan} prints and the tests compare.
 *
 * <p>A replica carries its expert's share divided by the expert's replica count (routers split an
 * expert's tokens over its replicas by outstanding work). Loads are in units of one layer's
 * routed work, so a layer's device loads sum to 1 and their mean is 1 / devices.
 *
 * @param devices device ids, in plan order
 * @param layerLoad (layers, devices) each device's load in each layer
 * @param replicas per device: replicas hosted
 * @param memoryBytes per device: resident bytes of the replicas hosted
 */
public record PlacementStats(List<String> devices, double[][] layerLoad, int[] replicas, long[] memoryBytes) {

    /** Evaluates {@code plan} under {@code loads}; {@code memory} prices the replicas. */
    public static PlacementStats of(PlacementPlan plan, ExpertLoads loads, ExpertMemory memory) {
        loads.requireShape(plan.layers(), plan.experts());
        List<String> ids = plan.devices().stream().map(PlacementPlan.Device::id).toList();
        double[][] layerLoad = new double[plan.layers()][ids.size()];
        int[] replicas = new int[ids.size()];
        long[] bytes = new long[ids.size()];
        for (PlacementPlan.Assignment a : plan.assignments()) {
            double each = loads.share(a.layer(), a.expert()) / a.devices().size();
            for (String id : a.devices()) {
                int d = ids.indexOf(id);
                layerLoad[a.layer()][d] += each;
                replicas[d]++;
                bytes[d] += memory.of(a.layer(), a.expert());
            }
        }
        return new PlacementStats(ids, layerLoad, replicas, bytes);
    }

    /** Device {@code d}'s load summed over layers. */
    public double totalLoad(int d) {
        double sum = 0;
        for (double[] row : layerLoad) {
            sum += row[d];
        }
        return sum;
    }

    /** Layer {@code layer}'s busiest device over the mean device: 1 is perfect balance. */
    public double layerImbalance(int layer) {
        return max(layerLoad[layer]) * devices.size();
    }

    /**
     * Σ over layers of the busiest device's load, over the same sum for a perfect spread: how
     * much longer a step takes than with perfect balance, as each layer waits for its slowest device.
     */
    public double stepImbalance() {
        double sum = 0;
        for (double[] row : layerLoad) {
            sum += max(row);
        }
        return sum * devices.size() / layerLoad.length;
    }

    /** The most loaded device over the mean device, loads summed over layers. */
    public double deviceImbalance() {
        double[] totals = new double[devices.size()];
        for (int d = 0; d < totals.length; d++) {
            totals[d] = totalLoad(d);
        }
        return max(totals) * devices.size() / layerLoad.length;
    }

    private static double max(double[] values) {
        double m = 0;
        for (double v : values) {
            m = Math.max(m, v);
        }
        return m;
    }
}
