package dev.cmoe.experts.placement;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonParseException;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.model.io.AtomicFile;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Which devices host each routed expert: the contract between the placement planner, an operator
 * who edits the JSON file by hand, and the serving head that places experts on workers.
 *
 * <p>A device id is {@code WORKER/DEVICE}, e.g. {@code worker-1/gpu:0} or {@code local/cpu}: the
 * worker's cluster name and one of its devices. Every (layer, expert) of the model has at least
 * one host; several hosts are replicas, and routers pick among them by outstanding work.
 *
 * @param version format version, currently 1
 * @param layers decoder layers of the carved model
 * @param experts routed experts per layer
 * @param devices the devices the plan uses, with the memory each may spend on experts
 * @param assignments one entry per (layer, expert)
 */
public record PlacementPlan(int version, int layers, int experts, List<Device> devices,
                           List<Assignment> assignments) {
    /** The current file format version. */
    public static final int VERSION = 1;

    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create();

    /**
     * A device that hosts experts.
     *
     * @param id {@code WORKER/DEVICE}
     * @param memoryBytes what the device may spend on expert weights; 0 means not limited
     */
    public record Device(String id, long memoryBytes) {
    }

    /**
     * Where one routed expert lives.
     *
     * @param layer decoder layer
     * @param expert routed expert index within the layer
     * @param devices device ids of its replicas (at least one)
     * @param load the expert's expected share of its layer's routed tokens, for operators; informational
     */
    public record Assignment(int layer, int expert, List<String> devices, double load) {
        /** The expert this entry places. */
        public ExpertId id() {
            return new ExpertId(layer, expert);
        }
    }

    public PlacementPlan {
        if (devices == null || assignments == null) {
            throw new IllegalArgumentException("placement plan needs \"devices\" and \"assignments\" lists");
        }
        devices = List.copyOf(devices);
        assignments = List.copyOf(assignments);
        for (Assignment a : assignments) {
            if (a.devices() == null) {
                throw new IllegalArgumentException("placement plan: expert (" + a.layer() + ", " + a.expert()
                        + ") has no \"devices\" list");
            }
        }
        assignments = assignments.stream()
                .map(a -> new Assignment(a.layer(), a.expert(), List.copyOf(a.devices()), a.load()))
                .toList();
        validate(version, layers, experts, devices, assignments);
    }

    private static void validate(int version, int layers, int experts, List<Device> devices,
                                 List<Assignment> assignments) {
        if (version != VERSION) {
            throw new IllegalArgumentException("placement plan: version " + version + " is not supported (expected "
                    + VERSION + ")");
        }
        if (layers <= 0 || experts <= 0) {
            throw new IllegalArgumentException("placement plan: layers and experts must be positive, got " + layers
                    + " and " + experts);
        }
        Set<String> ids = new HashSet<>();
        for (Device d : devices) {
            if (d.id() == null || !d.id().matches("[^/\\s]+/[^/\\s]+")) {
                throw new IllegalArgumentException("placement plan: device id \"" + d.id()
                        + "\" is not WORKER/DEVICE (e.g. worker-1/gpu:0)");
            }
            if (d.memoryBytes() < 0) {
                throw new IllegalArgumentException("placement plan: device " + d.id() + " has negative memoryBytes");
            }
            if (!ids.add(d.id())) {
                throw new IllegalArgumentException("placement plan: device " + d.id() + " is listed twice");
            }
        }
        boolean[][] seen = new boolean[layers][experts];
        for (Assignment a : assignments) {
            if (a.layer() < 0 || a.layer() >= layers || a.expert() < 0 || a.expert() >= experts) {
                throw new IllegalArgumentException("placement plan: expert (" + a.layer() + ", " + a.expert()
                        + ") is outside " + layers + " layers × " + experts + " experts");
            }
            if (seen[a.layer()][a.expert()]) {
                throw new IllegalArgumentException("placement plan: expert (" + a.layer() + ", " + a.expert()
                        + ") is assigned twice");
            }
            seen[a.layer()][a.expert()] = true;
            if (a.devices().isEmpty()) {
                throw new IllegalArgumentException("placement plan: expert (" + a.layer() + ", " + a.expert()
                        + ") has no device");
            }
            if (new HashSet<>(a.devices()).size() != a.devices().size()) {
                throw new IllegalArgumentException("placement plan: expert (" + a.layer() + ", " + a.expert()
                        + ") lists a device twice");
            }
            for (String d : a.devices()) {
                if (!ids.contains(d)) {
                    throw new IllegalArgumentException("placement plan: expert (" + a.layer() + ", " + a.expert()
                            + ") is placed on unknown device " + d);
                }
            }
        }
        for (int l = 0; l < layers; l++) {
            for (int e = 0; e < experts; e++) {
                if (!seen[l][e]) {
                    throw new IllegalArgumentException("placement plan: expert (" + l + ", " + e + ") has no assignment");
                }
            }
        }
    }

    /** The replicas of one expert, in plan order. */
    public List<String> devicesFor(ExpertId id) {
        return byExpert().get(id);
    }

    /** Every expert with its replicas. */
    public Map<ExpertId, List<String>> byExpert() {
        Map<ExpertId, List<String>> out = new HashMap<>();
        for (Assignment a : assignments) {
            out.put(a.id(), a.devices());
        }
        return out;
    }

    /** The experts each device hosts (devices without experts map to an empty list). */
    public Map<String, List<ExpertId>> byDevice() {
        Map<String, List<ExpertId>> out = new HashMap<>();
        for (Device d : devices) {
            out.put(d.id(), new ArrayList<>());
        }
        for (Assignment a : assignments) {
            for (String d : a.devices()) {
                out.get(d).add(a.id());
            }
        }
        return out;
    }

    /** The plan as pretty-printed JSON. */
    public String toJson() {
        return GSON.toJson(this);
    }

    /** Parses and validates a plan; every problem is an {@link IllegalArgumentException} naming it. */
    public static PlacementPlan fromJson(String json) {
        PlacementPlan plan;
        try {
            plan = GSON.fromJson(json, PlacementPlan.class);
        } catch (JsonParseException e) {
            throw new IllegalArgumentException("placement plan is not valid JSON: " + e.getMessage(), e);
        } catch (RuntimeException e) {
            // Gson wraps what the validating constructor throws; the validation message is the useful one.
            for (Throwable t = e; t != null; t = t.getCause()) {
                if (t instanceof IllegalArgumentException iae) {
                    throw iae;
                }
            }
            throw e;
        }
        if (plan == null) {
            throw new IllegalArgumentException("placement plan is empty");
        }
        return plan;
    }

    /** Reads a plan file. */
    public static PlacementPlan read(Path file) {
        try {
            return fromJson(Files.readString(file, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read placement plan " + file + ": " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage(), e);
        }
    }

    /** Writes the plan atomically. */
    public void write(Path file) {
        AtomicFile.write(file, toJson().getBytes(StandardCharsets.UTF_8));
    }
}
