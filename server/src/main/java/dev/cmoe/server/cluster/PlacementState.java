package dev.cmoe.server.cluster;

import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.server.moe.LayerReplicas;
import dev.cmoe.server.moe.Replica;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * The head's placement bookkeeping, apart from the messaging that drives it: the live devices
 * and what each has loaded, where each expert should be (desired), and from both the replica
 * tables the routers use. Only {@link PlacementCoordinator} touches it, from its own thread.
 */
final class PlacementState {

    /** A live expert-worker device as the head knows it. */
    static final class Device {
        final String id;
        final ActorRef<ExpertWorker.Command> ref;
        final long memoryBytes;
        final ActorRef<DeviceCompute.Command> compute; // where routers send its rows
        final Map<ExpertId, ActorRef<ExpertActor.Command>> loaded = new LinkedHashMap<>(); // serving on it

        Device(String id, ActorRef<ExpertWorker.Command> ref, long memoryBytes, ActorRef<DeviceCompute.Command> compute) {
            this.id = id;
            this.ref = ref;
            this.memoryBytes = memoryBytes;
            this.compute = compute;
        }
    }

    private final ExpertShape shape;
    private final Map<String, Device> devices = new LinkedHashMap<>();    // id -> live device, join order
    private final Map<ExpertId, List<String>> desired = new HashMap<>();  // expert -> devices it should be on
    private boolean placed;

    PlacementState(ExpertShape shape) {
        this.shape = shape;
    }

    ExpertShape shape() {
        return shape;
    }

    /** Whether the first placement was made. */
    boolean placed() {
        return placed;
    }

    Map<String, Device> devices() {
        return devices;
    }

    Device device(String id) {
        return devices.get(id);
    }

    Device device(ActorRef<ExpertWorker.Command> ref) {
        return devices.values().stream().filter(d -> d.ref.equals(ref)).findFirst().orElse(null);
    }

    void add(Device d) {
        devices.put(d.id, d);
    }

    /** Forgets a lost device and every desire for it (its experts become homeless unless replicated). */
    Device remove(String id) {
        Device d = devices.remove(id);
        desired.values().forEach(l -> l.remove(id));
        return d;
    }

    /** Makes {@code plan} (validated) the target; experts on devices that are not live become homeless. */
    void desire(PlacementPlan plan) {
        desired.clear();
        plan.byExpert().forEach((id, ds) -> desired.put(id, new ArrayList<>(ds.stream()
                .filter(devices::containsKey).toList())));
        placed = true;
    }

    /**
     * Gives every expert without a live desired device one: the live device with the fewest
     * desired experts that has memory for one more.
     *
     * @return the experts that fit nowhere
     */
    List<ExpertId> assignHomeless() {
        List<ExpertId> left = new ArrayList<>();
        if (!placed) {
            return left;
        }
        Map<String, Integer> count = desiredCounts();
        for (ExpertId id : allExperts()) {
            List<String> ds = desired.computeIfAbsent(id, k -> new ArrayList<>());
            if (!ds.isEmpty()) {
                continue;
            }
            String best = null;
            for (Device d : devices.values()) {
                int n = count.get(d.id);
                if (fits(d, n + 1) && (best == null || n < count.get(best))) {
                    best = d.id;
                }
            }
            if (best == null) {
                left.add(id);
            } else {
                ds.add(best);
                count.merge(best, 1, Integer::sum);
            }
        }
        return left;
    }

    /** Device id -> experts desired there that it has not loaded yet. */
    Map<String, List<ExpertId>> missingLoads() {
        Map<String, List<ExpertId>> out = new TreeMap<>();
        desired.forEach((id, ds) -> ds.forEach(d -> {
            Device dev = devices.get(d);
            if (dev != null && !dev.loaded.containsKey(id)) {
                out.computeIfAbsent(d, k -> new ArrayList<>()).add(id);
            }
        }));
        return out;
    }

    /** The device will not host {@code ids} (its load failed): they are placed again elsewhere. */
    void undesire(String device, List<ExpertId> ids) {
        ids.forEach(id -> desired.getOrDefault(id, new ArrayList<>()).remove(device));
    }

    /**
     * The replicas layer {@code layer}'s router uses: each expert's desired devices that serve it;
     * while none does yet, any live device that still serves it (make-before-break: the old copy
     * works until the new one is loaded).
     */
    LayerReplicas table(int layer) {
        List<List<Replica>> out = new ArrayList<>();
        for (int j = 0; j < shape.routed(); j++) {
            ExpertId id = new ExpertId(layer, j);
            List<Replica> rs = new ArrayList<>();
            for (String d : desired.getOrDefault(id, List.of())) {
                Device dev = devices.get(d);
                if (dev != null && dev.loaded.containsKey(id)) {
                    rs.add(new Replica(d, dev.loaded.get(id), dev.compute));
                }
            }
            if (rs.isEmpty()) {
                for (Device dev : devices.values()) {
                    if (dev.loaded.containsKey(id)) {
                        rs.add(new Replica(dev.id, dev.loaded.get(id), dev.compute));
                    }
                }
            }
            out.add(rs);
        }
        return new LayerReplicas(layer, out);
    }

    /** Experts that no live device serves: while any is left, the head is NOT_SERVING. */
    List<ExpertId> unserved() {
        List<ExpertId> out = new ArrayList<>();
        for (ExpertId id : allExperts()) {
            if (devices.values().stream().noneMatch(d -> d.loaded.containsKey(id))) {
                out.add(id);
            }
        }
        return out;
    }

    /** Device id -> loaded experts that no router table uses any more (to drain, then unload). */
    Map<String, Set<ExpertId>> extras() {
        Map<String, Set<ExpertId>> inUse = new HashMap<>();
        for (int l = 0; l < shape.layers(); l++) {
            List<List<Replica>> t = table(l).experts();
            for (int j = 0; j < t.size(); j++) {
                for (Replica r : t.get(j)) {
                    inUse.computeIfAbsent(r.device(), k -> new HashSet<>()).add(new ExpertId(l, j));
                }
            }
        }
        Map<String, Set<ExpertId>> out = new TreeMap<>();
        for (Device d : devices.values()) {
            for (ExpertId id : d.loaded.keySet()) {
                if (!inUse.getOrDefault(d.id, Set.of()).contains(id)) {
                    out.computeIfAbsent(d.id, k -> new HashSet<>()).add(id);
                }
            }
        }
        return out;
    }

    /** The live devices as plan devices (with their memory budgets). */
    List<PlacementPlan.Device> liveDevices() {
        return devices.values().stream().map(d -> new PlacementPlan.Device(d.id, d.memoryBytes)).toList();
    }

    /** Where experts are meant to be now, over the live devices; null before the first placement. */
    PlacementPlan current(double[][] load) {
        if (!placed || devices.isEmpty()) {
            return null;
        }
        List<PlacementPlan.Assignment> as = new ArrayList<>();
        for (ExpertId id : allExperts()) {
            List<String> ds = desired.getOrDefault(id, List.of());
            if (ds.isEmpty()) {
                return null; // not every expert has a live device: nothing to compare yet
            }
            double total = 0;
            for (double v : load[id.layer()]) {
                total += v;
            }
            as.add(new PlacementPlan.Assignment(id.layer(), id.expert(), List.copyOf(ds),
                    total > 0 ? load[id.layer()][id.expert()] / total : 0));
        }
        return new PlacementPlan(PlacementPlan.VERSION, shape.layers(), shape.routed(), liveDevices(), as);
    }

    /** Why {@code plan} cannot be applied to the live devices, or null when it can. */
    String validate(PlacementPlan plan) {
        if (plan.layers() != shape.layers() || plan.experts() != shape.routed()) {
            return "the plan places " + plan.layers() + " layers × " + plan.experts() + " experts, the model has "
                    + shape.layers() + " × " + shape.routed();
        }
        Map<String, Integer> count = new HashMap<>();
        for (PlacementPlan.Assignment a : plan.assignments()) {
            for (String d : a.devices()) {
                if (!devices.containsKey(d)) {
                    return "the plan places expert " + a.id() + " on " + d + ", which is not a live device (live: "
                            + devices.keySet() + ")";
                }
                count.merge(d, 1, Integer::sum);
            }
        }
        for (Map.Entry<String, Integer> c : count.entrySet()) {
            Device d = devices.get(c.getKey());
            if (!fits(d, c.getValue())) {
                return "the plan puts " + c.getValue() + " experts (" + c.getValue() * shape.expertBytes()
                        + " bytes) on " + d.id + ", whose budget is " + d.memoryBytes + " bytes";
            }
        }
        return null;
    }

    /** Device id -> experts it serves now. */
    Map<String, Integer> hostedCounts() {
        Map<String, Integer> out = new LinkedHashMap<>();
        devices.values().forEach(d -> out.put(d.id, d.loaded.size()));
        return out;
    }

    private Map<String, Integer> desiredCounts() {
        Map<String, Integer> count = new HashMap<>();
        devices.keySet().forEach(d -> count.put(d, 0));
        desired.values().forEach(ds -> ds.forEach(d -> count.merge(d, 1, Integer::sum)));
        return count;
    }

    private boolean fits(Device d, int experts) {
        return d.memoryBytes == 0 || (long) experts * shape.expertBytes() <= d.memoryBytes;
    }

    List<ExpertId> allExperts() {
        List<ExpertId> out = new ArrayList<>();
        for (int l = 0; l < shape.layers(); l++) {
            for (int j = 0; j < shape.routed(); j++) {
                out.add(new ExpertId(l, j));
            }
        }
        return out;
    }
}
