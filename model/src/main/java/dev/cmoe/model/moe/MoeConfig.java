package dev.cmoe.model.moe;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.config.ModelConfigException;
import com.google.gson.JsonArray;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * The {@code cmoe} block of a carved model's config.json: how every FFN was split into experts.
 * Its presence is what makes a checkpoint a Mixture-of-Experts; dense configs have none.
 *
 * <pre>{@code
 * "cmoe": {"experts": 8, "shared": 2, "active": 2, "expert_size": 128,
 *          "router": "analytical", "method": "cmoe", "k_act": 10, "calibration": {...}, ...}
 * }</pre>
 *
 * @param experts N, all groups of {@code expertSize} neurons (shared ones included)
 * @param shared N_s, groups merged into the always-on shared expert (0: no shared expert)
 * @param active N_k, routed experts selected per token; with per-layer budgets their mean over the
 *     layers
 * @param expertSize m, neurons per expert group
 * @param router the router kind; {@value #ANALYTICAL} is the only one the forward implements
 * @param method how the carving was done (e.g. "cmoe", "ours"), informational
 * @param details every other field of the block (k_act, calibration, balancing), kept as written
 * @param activePerLayer {@code active_per_layer}: layer l selects {@code activePerLayer[l]} routed
 *     experts per token instead of N_k (the carve gives the layers that need them more, within
 *     the same total); empty when every layer selects N_k
 */
public record MoeConfig(int experts, int shared, int active, int expertSize, String router, String method,
                        JsonObject details, List<Integer> activePerLayer) {

    /** The config.json key of the block. */
    public static final String KEY = "cmoe";
    /** Router kind: s = |(x·classifierᵀ) ⊙ SiLU(x·gateᵀ)|, CMoE's training-free router. */
    public static final String ANALYTICAL = "analytical";

    private static final Set<String> TYPED = Set.of("experts", "shared", "active", "expert_size", "router", "method",
            "active_per_layer");

    /** Every layer selects {@code active} routed experts. */
    public MoeConfig(int experts, int shared, int active, int expertSize, String router, String method,
                     JsonObject details) {
        this(experts, shared, active, expertSize, router, method, details, List.of());
    }

    public MoeConfig {
        if (experts < 1) {
            throw new IllegalArgumentException("cmoe.experts must be at least 1, got " + experts);
        }
        if (shared < 0) {
            throw new IllegalArgumentException("cmoe.shared must not be negative, got " + shared);
        }
        if (active < 1) {
            throw new IllegalArgumentException("cmoe.active must be at least 1, got " + active);
        }
        if (shared + active > experts) {
            throw new IllegalArgumentException("cmoe.shared + cmoe.active = " + shared + " + " + active
                    + " exceeds cmoe.experts = " + experts);
        }
        if (expertSize < 1) {
            throw new IllegalArgumentException("cmoe.expert_size must be at least 1, got " + expertSize);
        }
        if (!ANALYTICAL.equals(router)) {
            throw new IllegalArgumentException("cmoe.router '" + router + "' is not supported (only '"
                    + ANALYTICAL + "')");
        }
        details = details == null ? new JsonObject() : details.deepCopy();
        activePerLayer = activePerLayer == null ? List.of() : List.copyOf(activePerLayer);
        for (int l = 0; l < activePerLayer.size(); l++) {
            int k = activePerLayer.get(l);
            if (k < 1 || k > experts - shared) {
                throw new IllegalArgumentException("cmoe.active_per_layer[" + l + "] = " + k + " is outside 1.."
                        + (experts - shared) + " (the routed experts)");
            }
        }
    }

    /** Routed experts layer {@code layer} selects per token. */
    public int active(int layer) {
        return activePerLayer.isEmpty() ? active : activePerLayer.get(layer);
    }

    /** The most routed experts any layer selects per token: what a step's message must have room for. */
    public int maxActive() {
        return activePerLayer.stream().mapToInt(Integer::intValue).max().orElse(active);
    }

    /** Whether the layers select different numbers of routed experts. */
    public boolean hasLayerBudgets() {
        return !activePerLayer.isEmpty();
    }

    /** This block as layer {@code layer} sees it: N_k is that layer's own, and there are no per-layer budgets. */
    public MoeConfig forLayer(int layer) {
        return activePerLayer.isEmpty() ? this
                : new MoeConfig(experts, shared, active(layer), expertSize, router, method, details);
    }

    /**
     * This block with layer l selecting {@code perLayer[l]} routed experts; N_k stays the mean,
     * so the budgets must sum to N_k times the layer count.
     */
    public MoeConfig withActivePerLayer(int[] perLayer) {
        checkBudgets(perLayer.length, Arrays.stream(perLayer).sum());
        boolean uniform = Arrays.stream(perLayer).allMatch(k -> k == active);
        return new MoeConfig(experts, shared, active, expertSize, router, method, details,
                uniform ? List.of() : Arrays.stream(perLayer).boxed().toList());
    }

    private void checkBudgets(int layers, int sum) {
        if (sum != (long) active * layers) {
            throw new IllegalArgumentException("cmoe.active_per_layer sums to " + sum + ", but cmoe.active × "
                    + layers + " layers = " + (long) active * layers + " (the budgets share out the same total)");
        }
    }

    /** N_r = N − N_s, the experts the router chooses from. */
    public int routed() {
        return experts - shared;
    }

    /** Neurons of the shared expert, N_s·m (0 without one). */
    public int sharedSize() {
        return shared * expertSize;
    }

    /** The block of {@code config}, or empty for a dense model; also checks N·m = intermediate size. */
    public static Optional<MoeConfig> of(ModelConfig config) {
        JsonElement e = config.raw().get(KEY);
        if (e == null || e.isJsonNull()) {
            return Optional.empty();
        }
        if (!e.isJsonObject()) {
            throw new ModelConfigException("config field '" + KEY + "' must be an object, got " + e);
        }
        MoeConfig moe = parse(e.getAsJsonObject());
        if (moe.hasLayerBudgets()) {
            if (moe.activePerLayer.size() != config.numLayers()) {
                throw new ModelConfigException("cmoe.active_per_layer has " + moe.activePerLayer.size()
                        + " entries, the model has " + config.numLayers() + " layers (num_hidden_layers)");
            }
            try {
                moe.checkBudgets(config.numLayers(), moe.activePerLayer.stream().mapToInt(Integer::intValue).sum());
            } catch (IllegalArgumentException ex) {
                throw new ModelConfigException(ex.getMessage(), ex);
            }
        }
        long neurons = (long) moe.experts * moe.expertSize;
        if (neurons != config.intermediateSize()) {
            throw new ModelConfigException("cmoe.experts × cmoe.expert_size = " + moe.experts + " × "
                    + moe.expertSize + " = " + neurons + " does not equal intermediate_size "
                    + config.intermediateSize());
        }
        return Optional.of(moe);
    }

    /** Parses the block itself; errors name the field. */
    public static MoeConfig parse(JsonObject o) {
        JsonObject details = new JsonObject();
        o.entrySet().stream().filter(f -> !TYPED.contains(f.getKey()))
                .forEach(f -> details.add(f.getKey(), f.getValue().deepCopy()));
        try {
            return new MoeConfig(integer(o, "experts"), integer(o, "shared"), integer(o, "active"),
                    integer(o, "expert_size"), string(o, "router"), string(o, "method"), details,
                    integers(o, "active_per_layer"));
        } catch (IllegalArgumentException ex) {
            throw new ModelConfigException(ex.getMessage(), ex);
        }
    }

    /** The block as written into config.json: the typed fields first, then {@link #details}. */
    public JsonObject toJson() {
        JsonObject o = new JsonObject();
        o.addProperty("experts", experts);
        o.addProperty("shared", shared);
        o.addProperty("active", active);
        o.addProperty("expert_size", expertSize);
        o.addProperty("router", router);
        o.addProperty("method", method);
        if (!activePerLayer.isEmpty()) {
            JsonArray a = new JsonArray();
            activePerLayer.forEach(a::add);
            o.add("active_per_layer", a);
        }
        details.entrySet().forEach(f -> o.add(f.getKey(), f.getValue().deepCopy()));
        return o;
    }

    /** An optional array of integers: empty when absent. */
    private static List<Integer> integers(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) {
            return List.of();
        }
        if (!e.isJsonArray() || e.getAsJsonArray().isEmpty()) {
            throw new ModelConfigException("cmoe: field '" + name + "' must be a non-empty array of integers, got " + e);
        }
        JsonArray a = e.getAsJsonArray();
        Integer[] out = new Integer[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = integer(a.get(i), name + "[" + i + "]");
        }
        return List.of(out);
    }

    private static int integer(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) {
            throw new ModelConfigException("cmoe: missing required field '" + name + "'");
        }
        return integer(e, name);
    }

    private static int integer(JsonElement e, String name) {
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()
                || e.getAsDouble() != Math.rint(e.getAsDouble()) || Math.abs(e.getAsDouble()) > Integer.MAX_VALUE) {
            throw new ModelConfigException("cmoe: field '" + name + "' must be an integer, got " + e);
        }
        return e.getAsInt();
    }

    private static String string(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) {
            throw new ModelConfigException("cmoe: missing required field '" + name + "'");
        }
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
            throw new ModelConfigException("cmoe: field '" + name + "' must be a string, got " + e);
        }
        return e.getAsString();
    }
}
