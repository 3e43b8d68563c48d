package dev.cmoe.experts.placement;

import dev.cmoe.experts.ExpertId;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The head's own placement: round-robin over the live devices when nothing is known yet, and for
 * a rebalance a few greedy moves from the most to the least loaded device, each one lowering the
 * maximum device load, so that a live rebalance moves little. Replicas in the current placement
 * are kept (their load is split evenly between them); it makes none of its own.
 */
public final class DefaultPlacement implements PlacementPolicy {
    private final int maxMoves;

    /** @param maxMoves at most this many expert moves per rebalance */
    public DefaultPlacement(int maxMoves) {
        if (maxMoves <= 0) {
            throw new IllegalArgumentException("max moves must be > 0, got " + maxMoves);
        }
        this.maxMoves = maxMoves;
    }

    /**
     * Every (layer, expert) on one device, in rotation over {@code devices}, skipping devices whose
     * memory budget is full.
     *
     * @throws IllegalStateException when the experts do not fit the devices' memory
     */
    public static PlacementPlan roundRobin(int layers, int experts, List<PlacementPlan.Device> devices,
                                           long expertBytes) {
        if (devices.isEmpty()) {
            throw new IllegalStateException("no device to place " + layers * experts + " experts on");
        }
        int[] hosted = new int[devices.size()];
        List<PlacementPlan.Assignment> out = new ArrayList<>();
        int next = 0;
        for (int l = 0; l < layers; l++) {
            for (int e = 0; e < experts; e++) {
                int d = -1;
                for (int tries = 0; tries < devices.size() && d < 0; tries++) {
                    int c = (next + tries) % devices.size();
                    if (fits(devices.get(c), hosted[c] + 1, expertBytes)) {
                        d = c;
                    }
                }
                if (d < 0) {
                    throw new IllegalStateException(layers * experts + " experts of " + expertBytes
                            + " bytes do not fit the memory of " + devices);
                }
                hosted[d]++;
                next = d + 1;
                out.add(new PlacementPlan.Assignment(l, e, List.of(devices.get(d).id()), 1.0 / experts));
            }
        }
        return new PlacementPlan(PlacementPlan.VERSION, layers, experts, devices, out);
    }

    @Override
    public PlacementPlan place(PlacementPlan current, List<PlacementPlan.Device> devices, double[][] load,
                               long expertBytes) {
        int layers = load.length;
        int experts = load[0].length;
        if (current == null) {
            return roundRobin(layers, experts, devices, expertBytes);
        }
        Map<String, PlacementPlan.Device> byId = new LinkedHashMap<>();
        devices.forEach(d -> byId.put(d.id(), d));
        Map<String, Double> deviceLoad = new LinkedHashMap<>();
        Map<String, Integer> hosted = new HashMap<>();
        devices.forEach(d -> {
            deviceLoad.put(d.id(), 0.0);
            hosted.put(d.id(), 0);
        });
        Map<ExpertId, List<String>> where = new LinkedHashMap<>();
        for (int l = 0; l < layers; l++) {
            for (int e = 0; e < experts; e++) {
                List<String> replicas = new ArrayList<>(current.devicesFor(new ExpertId(l, e)).stream()
                        .filter(byId::containsKey).toList());
                where.put(new ExpertId(l, e), replicas);
                replicas.forEach(d -> hosted.merge(d, 1, Integer::sum));
            }
        }
        // Experts that lost every replica go to the least loaded device with room first.
        for (Map.Entry<ExpertId, List<String>> w : where.entrySet()) {
            if (w.getValue().isEmpty()) {
                String d = leastLoaded(deviceLoad, hosted, byId, expertBytes, List.of());
                if (d == null) {
                    throw new IllegalStateException("expert " + w.getKey() + " fits on none of " + devices);
                }
                w.getValue().add(d);
                hosted.merge(d, 1, Integer::sum);
                deviceLoad.merge(d, share(load, w.getKey(), 1), Double::sum);
            } else {
                for (String d : w.getValue()) {
                    deviceLoad.merge(d, share(load, w.getKey(), w.getValue().size()), Double::sum);
                }
            }
        }
        for (int move = 0; move < maxMoves; move++) {
            String hi = deviceLoad.entrySet().stream().max(Map.Entry.comparingByValue()).orElseThrow().getKey();
            String lo = leastLoaded(deviceLoad, hosted, byId, expertBytes, List.of(hi));
            if (lo == null) {
                break;
            }
            double hiLoad = deviceLoad.get(hi);
            double loLoad = deviceLoad.get(lo);
            ExpertId best = null;
            double bestMax = hiLoad * (1 - 1e-9); // a move must lower the pair's maximum
            for (Map.Entry<ExpertId, List<String>> w : where.entrySet()) {
                if (w.getValue().contains(hi) && !w.getValue().contains(lo)) {
                    double s = share(load, w.getKey(), w.getValue().size());
                    double pairMax = Math.max(hiLoad - s, loLoad + s);
                    if (pairMax < bestMax) {
                        bestMax = pairMax;
                        best = w.getKey();
                    }
                }
            }
            if (best == null) {
                break;
            }
            List<String> replicas = where.get(best);
            double s = share(load, best, replicas.size());
            replicas.set(replicas.indexOf(hi), lo);
            deviceLoad.merge(hi, -s, Double::sum);
            deviceLoad.merge(lo, s, Double::sum);
            hosted.merge(hi, -1, Integer::sum);
            hosted.merge(lo, 1, Integer::sum);
        }
        List<PlacementPlan.Assignment> out = new ArrayList<>();
        for (Map.Entry<ExpertId, List<String>> w : where.entrySet()) {
            ExpertId id = w.getKey();
            out.add(new PlacementPlan.Assignment(id.layer(), id.expert(), List.copyOf(w.getValue()),
                    load[id.layer()][id.expert()] / layerTotal(load, id.layer())));
        }
        return new PlacementPlan(PlacementPlan.VERSION, layers, experts, devices, out);
    }

    /**
     * Per device, the load its replicas carry: each expert's load split evenly over its replicas
     * (what least-outstanding routing tends to).
     */
    public static Map<String, Double> deviceLoads(PlacementPlan plan, double[][] load) {
        Map<String, Double> out = new LinkedHashMap<>();
        plan.devices().forEach(d -> out.put(d.id(), 0.0));
        for (PlacementPlan.Assignment a : plan.assignments()) {
            for (String d : a.devices()) {
                out.merge(d, share(load, a.id(), a.devices().size()), Double::sum);
            }
        }
        return out;
    }

    /** Maximum over mean device load (1 = perfectly even); 1 for a plan without devices or load. */
    public static double imbalance(PlacementPlan plan, double[][] load) {
        Map<String, Double> loads = deviceLoads(plan, load);
        double max = loads.values().stream().mapToDouble(Double::doubleValue).max().orElse(0);
        double mean = loads.values().stream().mapToDouble(Double::doubleValue).average().orElse(0);
        return mean <= 0 ? 1.0 : max / mean;
    }

    private static double share(double[][] load, ExpertId id, int replicas) {
        return load[id.layer()][id.expert()] / replicas;
    }

    private static double layerTotal(double[][] load, int layer) {
        double sum = 0;
        for (double v : load[layer]) {
            sum += v;
        }
        return sum <= 0 ? 1 : sum;
    }

    private static String leastLoaded(Map<String, Double> deviceLoad, Map<String, Integer> hosted,
                                      Map<String, PlacementPlan.Device> byId, long expertBytes, List<String> except) {
        String best = null;
        for (Map.Entry<String, Double> e : deviceLoad.entrySet()) {
            if (except.contains(e.getKey()) || !fits(byId.get(e.getKey()), hosted.get(e.getKey()) + 1, expertBytes)) {
                continue;
            }
            if (best == null || e.getValue() < deviceLoad.get(best)) {
                best = e.getKey();
            }
        }
        return best;
    }

    private static boolean fits(PlacementPlan.Device d, int experts, long expertBytes) {
        return d.memoryBytes() == 0 || (long) experts * expertBytes <= d.memoryBytes();
    }
}
