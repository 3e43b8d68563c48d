package dev.cmoe.model.moe;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.config.ModelConfigException;
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
 * @param active N_k, routed experts selected per token
 * @param expertSize m, neurons per expert group
 * @param router the router kind; {@value #ANALYTICAL} is the only one the forward implements
 * @param method how the carving was done (e.g. "cmoe", "ours"), informational
 * @param details every other field of the block (k_act, calibration, balancing), kept as written
 */
public record MoeConfig(int experts, int shared, int active, int expertSize, String router, String method,
                        JsonObject details) {

    /** The config.json key of the block. */
    public static final String KEY = "cmoe";
    /** Router kind: s = |(x·classifierᵀ) ⊙ SiLU(x·gateᵀ)|, CMoE's training-free router. */
    public static final String ANALYTICAL = "analytical";

    private static final Set<String> TYPED = Set.of("experts", "shared", "active", "expert_size", "router", "method");

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
                    integer(o, "expert_size"), string(o, "router"), string(o, "method"), details);
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
        details.entrySet().forEach(f -> o.add(f.getKey(), f.getValue().deepCopy()));
        return o;
    }

    private static int integer(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) {
            throw new ModelConfigException("cmoe: missing required field '" + name + "'");
        }
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
