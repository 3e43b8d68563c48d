package dev.cmoe.model.config;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.util.ArrayList;
import java.util.List;

/**
 * Typed access to the fields of a config.json with errors that name the field, its value and the
 * file, shared by {@link ModelConfig} and the architecture descriptions so every family reports a
 * bad field the same way.
 */
public record ConfigFields(JsonObject o, String source) {

    /** Whether the field is present and not null. */
    public boolean has(String name) {
        return o.has(name) && !o.get(name).isJsonNull();
    }

    JsonElement required(String name) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) {
            throw new ModelConfigException(source + ": missing required field '" + name + "'");
        }
        return e;
    }

    /** A required string field. */
    public String string(String name) {
        JsonElement e = required(name);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
            throw new ModelConfigException(source + ": field '" + name + "' must be a string, got " + e);
        }
        return e.getAsString();
    }

    /** A string field, or {@code dflt} when absent or null. */
    public String optString(String name, String dflt) {
        return has(name) ? string(name) : dflt;
    }

    /** A required integer in [1, max]. */
    public int boundedInt(String name, int max) {
        int v = intValue(name, required(name));
        if (v <= 0 || v > max) {
            throw new ModelConfigException(source + ": field '" + name + "' must be between 1 and " + max + ", got " + v);
        }
        return v;
    }

    /** A positive integer field, or {@code dflt} when absent or null. */
    public int optPositiveInt(String name, int dflt) {
        if (!has(name)) {
            return dflt;
        }
        int v = intValue(name, o.get(name));
        if (v <= 0) {
            throw new ModelConfigException(source + ": field '" + name + "' must be positive, got " + v);
        }
        return v;
    }

    /** An integer field, or {@code dflt} when absent or null. */
    public int optInt(String name, int dflt) {
        return has(name) ? intValue(name, o.get(name)) : dflt;
    }

    /** A required positive finite number. */
    public double positiveDouble(String name) {
        JsonElement e = required(name);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
            throw new ModelConfigException(source + ": field '" + name + "' must be a number, got " + e);
        }
        double v = e.getAsDouble();
        if (!(v > 0) || Double.isInfinite(v)) {
            throw new ModelConfigException(source + ": field '" + name + "' must be positive, got " + v);
        }
        return v;
    }

    /** A boolean field, or {@code dflt} when absent or null. */
    public boolean optBool(String name, boolean dflt) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) {
            return dflt;
        }
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) {
            throw new ModelConfigException(source + ": field '" + name + "' must be true or false, got " + e);
        }
        return e.getAsBoolean();
    }

    /** Fails, naming the field, when a boolean field is true: a feature the family does not have. */
    public void requireFalse(String name, String why) {
        if (optBool(name, false)) {
            throw new ModelConfigException(source + ": field '" + name + "' is true, which is not supported: " + why);
        }
    }

    /** An integer or a list of integers (e.g. eos_token_id); empty when absent. */
    public List<Integer> intOrList(String name) {
        JsonElement e = o.get(name);
        List<Integer> ids = new ArrayList<>();
        if (e == null || e.isJsonNull()) {
            return ids;
        }
        if (e.isJsonArray()) {
            e.getAsJsonArray().forEach(x -> ids.add(intValue(name, x)));
        } else {
            ids.add(intValue(name, e));
        }
        return ids;
    }

    int intValue(String name, JsonElement e) {
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
            throw new ModelConfigException(source + ": field '" + name + "' must be an integer, got " + e);
        }
        double d = e.getAsDouble();
        if (d != Math.rint(d) || Math.abs(d) > Integer.MAX_VALUE) {
            throw new ModelConfigException(source + ": field '" + name + "' must be an integer, got " + e);
        }
        return (int) d;
    }
}
