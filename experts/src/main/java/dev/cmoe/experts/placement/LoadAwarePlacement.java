package dev.cmoe.experts.placement;

import dev.cmoe.experts.ExpertId;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The head's load-aware placement: each rebalance re-plans with the EPLB {@link Planner} from the
 * tokens measured since the last one, replicating the hottest experts into a fixed number of
 * spare slots and packing the replicas so that every layer's busiest device carries as little as
 * possible, where {@link DefaultPlacement} can only move whole experts between devices.
 *
 * <ul>
 *   <li>First placement ({@code current == null}, nothing measured yet): round-robin, as
 *       {@link DefaultPlacement#roundRobin}. With uniform load the planner would only reach the
 *       same per-layer balance by another route, and spare replicas of experts that are not known
 *       to be hot would spend memory for nothing; the first rebalance brings the replicas.</li>
 *   <li>Spare slots that cannot be used are given up instead of failing the rebalance: never more
 *       than the live devices' memory holds beyond one replica per expert, nor more than one
 *       replica of an expert per device; and if the planner still refuses (memory too tight to
 *       pack), the spares are halved until it succeeds, down to none. Only a model that does not fit
 *       even without replicas fails.</li>
 *   <li>The planner starts from scratch, so its device names are then swapped among devices with
 *       the same memory budget to keep as many replicas as possible where they already are: the
 *       loads per device are the same under any such renaming, and a rebalance reloads fewer experts.</li>
 * </ul>
 */
public final class LoadAwarePlacement implements PlacementPolicy {
    private static final Logger LOG = LoggerFactory.getLogger(LoadAwarePlacement.class);

    private final int spareSlots;

    /** @param spareSlots replicas beyond one per expert to plan for, at most; 0 plans without replicas */
    public LoadAwarePlacement(int spareSlots) {
        if (spareSlots < 0) {
            throw new IllegalArgumentException("spare slots must be ≥ 0, got " + spareSlots);
        }
        this.spareSlots = spareSlots;
    }

    /** Replicas beyond one per expert this policy asks the planner for. */
    public int spareSlots() {
        return spareSlots;
    }

    @Override
    public PlacementPlan place(PlacementPlan current, List<PlacementPlan.Device> devices, double[][] load,
                               long expertBytes) {
        int layers = load.length;
        int experts = load[0].length;
        if (current == null) {
            return DefaultPlacement.roundRobin(layers, experts, devices, expertBytes);
        }
        if (devices.isEmpty()) {
            throw new IllegalStateException("no device to place " + layers * experts + " experts on");
        }
        ExpertLoads loads = ExpertLoads.ofCounts("measured window", load);
        ExpertMemory memory = ExpertMemory.uniform(layers, experts, expertBytes);
        int spare = Math.min(spareSlots, usableSpare(layers, experts, devices, expertBytes));
        PlacementPlan plan;
        while (true) {
            try {
                plan = Planner.plan(loads, memory, new Planner.Request(devices, spare, 0));
                break;
            } catch (IllegalArgumentException e) {
                if (spare == 0) {
                    throw e;
                }
                spare /= 2;
            }
        }
        if (spare < spareSlots) {
            LOG.info("{} of {} spare replica slots fit {} live devices ({} bytes per expert)", spare, spareSlots,
                    devices.size(), expertBytes);
        }
        return keepInPlace(plan, current);
    }

    /**
     * The spares the devices can take at most: the replicas their memory holds beyond one per
     * expert, and at most one replica of an expert per device that fits it.
     */
    static int usableSpare(int layers, int experts, List<PlacementPlan.Device> devices, long expertBytes) {
        long slots = 0;
        int hosts = 0;
        for (PlacementPlan.Device d : devices) {
            long fit = d.memoryBytes() == 0 || expertBytes == 0 ? Long.MAX_VALUE : d.memoryBytes() / expertBytes;
            if (fit > 0) {
                hosts++;
                slots = fit == Long.MAX_VALUE || slots == Long.MAX_VALUE ? Long.MAX_VALUE : slots + fit;
            }
        }
        long all = (long) layers * experts;
        long byMemory = slots == Long.MAX_VALUE ? Long.MAX_VALUE : slots - all;
        long byDevices = all * Math.max(0, hosts - 1);
        return (int) Math.max(0, Math.min(Integer.MAX_VALUE, Math.min(byMemory, byDevices)));
    }

    /**
     * {@code plan} with its devices renamed among devices of equal budget so that as many of its
     * replicas as possible are already loaded according to {@code current}: greedy on the overlap,
     * largest first, a device keeping its own name on ties.
     */
    static PlacementPlan keepInPlace(PlacementPlan plan, PlacementPlan current) {
        List<PlacementPlan.Device> devices = plan.devices();
        int n = devices.size();
        Map<String, Integer> index = new HashMap<>();
        for (int d = 0; d < n; d++) {
            index.put(devices.get(d).id(), d);
        }
        int[][] overlap = new int[n][n]; // [planned device][device that holds the replica now]
        Map<ExpertId, List<String>> now = current.byExpert();
        for (PlacementPlan.Assignment a : plan.assignments()) {
            for (String was : now.getOrDefault(a.id(), List.of())) {
                Integer to = index.get(was);
                if (to != null) {
                    for (String planned : a.devices()) {
                        overlap[index.get(planned)][to]++;
                    }
                }
            }
        }
        List<int[]> pairs = new ArrayList<>();
        for (int p = 0; p < n; p++) {
            for (int d = 0; d < n; d++) {
                if (devices.get(p).memoryBytes() == devices.get(d).memoryBytes()) {
                    pairs.add(new int[] {p, d});
                }
            }
        }
        pairs.sort((x, y) -> {
            int c = Integer.compare(overlap[y[0]][y[1]], overlap[x[0]][x[1]]);
            if (c == 0) {
                c = Boolean.compare(y[0] == y[1], x[0] == x[1]);
            }
            return c != 0 ? c : x[0] != y[0] ? Integer.compare(x[0], y[0]) : Integer.compare(x[1], y[1]);
        });
        // within one budget every planned device may take every name, so the greedy matching is complete
        int[] rename = new int[n];
        Arrays.fill(rename, -1);
        boolean[] taken = new boolean[n];
        for (int[] pair : pairs) {
            if (rename[pair[0]] < 0 && !taken[pair[1]]) {
                rename[pair[0]] = pair[1];
                taken[pair[1]] = true;
            }
        }
        List<PlacementPlan.Assignment> out = new ArrayList<>();
        for (PlacementPlan.Assignment a : plan.assignments()) {
            List<String> on = a.devices().stream().map(id -> devices.get(rename[index.get(id)]).id()).toList();
            out.add(new PlacementPlan.Assignment(a.layer(), a.expert(), on, a.load()));
        }
        return new PlacementPlan(plan.version(), plan.layers(), plan.experts(), devices, out);
    }
}
