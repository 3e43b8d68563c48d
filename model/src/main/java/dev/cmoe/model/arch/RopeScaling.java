package dev.cmoe.model.arch;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.cmoe.model.config.ModelConfigException;
import java.util.Set;

/**
 * How a checkpoint stretches rotary position embeddings beyond the context it was trained on:
 * the {@code rope_scaling} block of config.json with the semantics of transformers'
 * {@code modeling_rope_utils}. It decides each frequency of RoPE and, for YaRN, a factor on cos
 * and sin; the decoder asks it for nothing else.
 *
 * @param type none, linear, dynamic (NTK), llama3 or yarn
 * @param factor the scaling factor (1 for none)
 * @param originalContext the context the model was pre-trained with (llama3, yarn), else 0
 * @param lowFreqFactor llama3's low_freq_factor
 * @param highFreqFactor llama3's high_freq_factor
 * @param betaFast YaRN's beta_fast (rotations where extrapolation ends)
 * @param betaSlow YaRN's beta_slow (rotations where interpolation begins)
 * @param attentionFactor YaRN's factor on cos and sin (1 for the other types)
 * @param truncate YaRN's truncation of the correction range to whole dimensions
 */
public record RopeScaling(Type type, double factor, int originalContext, double lowFreqFactor, double highFreqFactor,
                          double betaFast, double betaSlow, double attentionFactor, boolean truncate) {

    /** The RoPE variants implemented; transformers' names in {@link #configName()}. */
    public enum Type {
        NONE("default"), LINEAR("linear"), DYNAMIC("dynamic"), LLAMA3("llama3"), YARN("yarn");

        private final String configName;

        Type(String configName) {
            this.configName = configName;
        }

        /** The {@code rope_type} value of config.json. */
        public String configName() {
            return configName;
        }
    }

    /** Plain RoPE. */
    public static final RopeScaling NONE = new RopeScaling(Type.NONE, 1, 0, 0, 0, 0, 0, 1, false);

    private static final Set<String> KNOWN_BUT_UNSUPPORTED = Set.of("longrope", "su", "mrope", "proportional");

    /**
     * Parses {@code rope_scaling} (absent or null: plain RoPE). {@code maxPositions} is the config's
     * max_position_embeddings, which YaRN uses as the original context when the block names none.
     */
    public static RopeScaling parse(JsonElement e, int maxPositions, String source) {
        if (e == null || e.isJsonNull()) {
            return NONE;
        }
        if (!e.isJsonObject()) {
            throw new ModelConfigException(source + ": rope_scaling must be an object or null, got " + e);
        }
        JsonObject o = e.getAsJsonObject();
        // transformers renamed "type" to "rope_type"; older checkpoints still write "type"
        String name = o.has("rope_type") ? text(o, "rope_type", source) : o.has("type") ? text(o, "type", source) : null;
        if (name == null) {
            throw new ModelConfigException(source + ": rope_scaling " + o + " names no rope_type");
        }
        switch (name) {
            case "default":
                return NONE;
            case "linear":
                return new RopeScaling(Type.LINEAR, factor(o, source), 0, 0, 0, 0, 0, 1, false);
            case "dynamic":
                return new RopeScaling(Type.DYNAMIC, factor(o, source), 0, 0, 0, 0, 0, 1, false);
            case "llama3": {
                double low = positive(o, "low_freq_factor", source);
                double high = positive(o, "high_freq_factor", source);
                if (!(high > low)) {
                    throw new ModelConfigException(source + ": rope_scaling high_freq_factor " + high
                            + " must exceed low_freq_factor " + low);
                }
                int original = (int) positive(o, "original_max_position_embeddings", source);
                return new RopeScaling(Type.LLAMA3, factor(o, source), original, low, high, 0, 0, 1, false);
            }
            case "yarn":
                return yarn(o, maxPositions, source);
            default:
                if (KNOWN_BUT_UNSUPPORTED.contains(name)) {
                    throw new ModelConfigException(source + ": rope_scaling type '" + name
                            + "' is not supported (supported: default, linear, dynamic, llama3, yarn)");
                }
                throw new ModelConfigException(source + ": unknown rope_scaling type '" + name
                        + "' (supported: default, linear, dynamic, llama3, yarn)");
        }
    }

    /**
     * transformers' {@code _compute_yarn_parameters}. When the block names the pre-trained context,
     * transformers replaces the factor by max_position_embeddings / original (DeepSeek-style configs
     * raise the former and keep the latter), for the frequencies and the attention factor alike.
     */
    private static RopeScaling yarn(JsonObject o, int maxPositions, String source) {
        double factor = factor(o, source);
        int original = maxPositions;
        if (o.has("original_max_position_embeddings") && !o.get("original_max_position_embeddings").isJsonNull()) {
            original = (int) positive(o, "original_max_position_embeddings", source);
            factor = (double) maxPositions / original;
        }
        double attention;
        if (o.has("attention_factor") && !o.get("attention_factor").isJsonNull()) {
            attention = positive(o, "attention_factor", source);
        } else {
            double mscale = optional(o, "mscale", 0, source);
            double mscaleAllDim = optional(o, "mscale_all_dim", 0, source);
            attention = mscale != 0 && mscaleAllDim != 0
                    ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim)
                    : yarnMscale(factor, 1);
        }
        double betaFast = optional(o, "beta_fast", 32, source);
        double betaSlow = optional(o, "beta_slow", 1, source);
        boolean truncate = !o.has("truncate") || o.get("truncate").isJsonNull() || o.get("truncate").getAsBoolean();
        return new RopeScaling(Type.YARN, factor, original, 0, 0, betaFast, betaSlow, attention, truncate);
    }

    private static double yarnMscale(double scale, double mscale) {
        return scale <= 1 ? 1.0 : 0.1 * mscale * Math.log(scale) + 1.0;
    }

    /**
     * The inverse frequency of each rotary pair i = 0 … headDim/2 − 1 for a sequence of
     * {@code seqLen} tokens (only dynamic scaling looks at it), in double precision.
     */
    public double[] inverseFrequencies(int headDim, double theta, int maxPositions, int seqLen) {
        int half = headDim / 2;
        double[] inv = new double[half];
        double base = theta;
        if (type == Type.DYNAMIC && seqLen > maxPositions) {
            base = theta * Math.pow(factor * seqLen / maxPositions - (factor - 1), headDim / (headDim - 2.0));
        }
        for (int i = 0; i < half; i++) {
            inv[i] = 1.0 / Math.pow(base, (2.0 * i) / headDim);
        }
        switch (type) {
            case LINEAR -> {
                for (int i = 0; i < half; i++) {
                    inv[i] /= factor;
                }
            }
            case LLAMA3 -> llama3(inv);
            case YARN -> yarn(inv, headDim, theta);
            default -> { }
        }
        return inv;
    }

    /** Meta's apply_scaling: long wavelengths divided by the factor, short ones kept, a smooth ramp between. */
    private void llama3(double[] inv) {
        double lowWavelen = originalContext / lowFreqFactor;
        double highWavelen = originalContext / highFreqFactor;
        for (int i = 0; i < inv.length; i++) {
            double wavelen = 2 * Math.PI / inv[i];
            if (wavelen > lowWavelen) {
                inv[i] = inv[i] / factor;
            } else if (wavelen >= highWavelen) {
                double smooth = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                inv[i] = (1 - smooth) * inv[i] / factor + smooth * inv[i];
            }
        }
    }

    /** YaRN: interpolated and extrapolated frequencies blended by a linear ramp over the correction range. */
    private void yarn(double[] inv, int headDim, double theta) {
        double low = correctionDim(betaFast, headDim, theta);
        double high = correctionDim(betaSlow, headDim, theta);
        if (truncate) {
            low = Math.floor(low);
            high = Math.ceil(high);
        }
        low = Math.max(low, 0);
        high = Math.min(high, headDim - 1);
        if (low == high) {
            high += 0.001; // transformers' guard against a zero-width ramp
        }
        for (int i = 0; i < inv.length; i++) {
            double extrapolation = inv[i];
            double interpolation = inv[i] / factor;
            double ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
            double extrapolationWeight = 1 - ramp;
            inv[i] = interpolation * (1 - extrapolationWeight) + extrapolation * extrapolationWeight;
        }
    }

    private double correctionDim(double rotations, int headDim, double theta) {
        return headDim * Math.log(originalContext / (rotations * 2 * Math.PI)) / (2 * Math.log(theta));
    }

    /**
     * The longest sequence the model takes: max_position_embeddings, stretched by the factor for
     * dynamic scaling, whose whole point is running past the trained context, and for YaRN when
     * max_position_embeddings is the original context (the block names no other).
     */
    public int context(int maxPositions) {
        if (type == Type.DYNAMIC || type == Type.YARN && originalContext == maxPositions) {
            return (int) Math.min(1 << 30, Math.floor(maxPositions * factor));
        }
        return maxPositions;
    }

    private static String text(JsonObject o, String key, String source) {
        JsonElement e = o.get(key);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
            throw new ModelConfigException(source + ": rope_scaling." + key + " must be a string, got " + e);
        }
        return e.getAsString();
    }

    private static double factor(JsonObject o, String source) {
        double f = positive(o, "factor", source);
        if (f < 1) {
            throw new ModelConfigException(source + ": rope_scaling.factor must be at least 1, got " + f);
        }
        return f;
    }

    private static double positive(JsonObject o, String key, String source) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) {
            throw new ModelConfigException(source + ": rope_scaling " + o + " lacks '" + key + "'");
        }
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
            throw new ModelConfigException(source + ": rope_scaling." + key + " must be a number, got " + e);
        }
        double v = e.getAsDouble();
        if (!(v > 0) || Double.isInfinite(v)) {
            throw new ModelConfigException(source + ": rope_scaling." + key + " must be positive, got " + v);
        }
        return v;
    }

    private static double optional(JsonObject o, String key, double dflt, String source) {
        return o.has(key) && !o.get(key).isJsonNull() ? positive(o, key, source) : dflt;
    }
}
