package dev.cmoe.model;

import dev.cmoe.model.arch.Layout;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.TensorInfo;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * What a user checks before carving or serving a checkpoint, read from config.json and the
 * safetensors headers only (no weight is read): architecture, sizes, parameter count, stored
 * dtypes and their bytes, context, and for a carved model its experts and active parameters.
 *
 * @param parameters every stored element
 * @param bytesByDtype stored bytes per dtype (a mixed checkpoint has several)
 * @param activeParameters elements a token runs through: all of a dense model; for a carved one
 *     everything but the routed experts that a token does not select
 */
public record ModelSummary(Path dir, ModelConfig config, Optional<MoeConfig> moe, long parameters,
                           Map<DType, Long> bytesByDtype, long activeParameters) {

    /** Reads the summary of {@code dir}; the config and every header are validated as a load would. */
    public static ModelSummary of(Path dir) {
        ModelConfig config = ModelConfig.load(dir);
        Optional<MoeConfig> moe = MoeConfig.of(config);
        long params = 0;
        long routed = 0;
        Map<DType, Long> bytes = new EnumMap<>(DType.class);
        try (Checkpoint c = Checkpoint.open(dir)) {
            for (String name : c.names()) {
                TensorInfo t = c.info(name);
                params += t.numel();
                bytes.merge(t.dtype(), t.byteLength(), Long::sum);
                if (name.contains(".mlp.experts.")) {
                    routed += t.numel();
                }
            }
            if (moe.isEmpty()) {
                // a dense checkpoint must hold what the architecture needs; say so before a load would
                Layout.dense(config).forEach(c::require);
            }
        }
        long active = params;
        if (moe.isPresent()) {
            MoeConfig m = moe.get();
            long picks = 0; // routed experts a token runs through, over all layers
            for (int l = 0; l < config.numLayers(); l++) {
                picks += m.active(l);
            }
            active = params - routed + routed / ((long) m.routed() * config.numLayers()) * picks;
        }
        return new ModelSummary(dir, config, moe, params, bytes, active);
    }

    /** The stored dtype: the single one, or "mixed (…)" naming each. */
    public String storedDtype() {
        if (bytesByDtype.size() == 1) {
            return bytesByDtype.keySet().iterator().next().name();
        }
        return "mixed " + bytesByDtype.keySet();
    }

    /** A human-readable report, one fact per line. */
    public String render() {
        ModelConfig c = config;
        StringBuilder s = new StringBuilder();
        line(s, "model", dir.toString());
        line(s, "architecture", c.architectureName() + " (model_type " + c.modelType() + ")");
        line(s, "layers", Integer.toString(c.numLayers()));
        line(s, "hidden / intermediate", c.hiddenSize() + " / " + c.intermediateSize());
        line(s, "attention", c.numHeads() + " query heads, " + c.numKvHeads() + " kv heads, head_dim "
                + c.headDim() + (c.attentionBias() ? ", q/k/v bias" : "") + (c.outputBias() ? ", o bias" : "")
                + (c.qkNorm() ? ", q/k norm" : "")
                + (c.slidingWindow() > 0 ? ", sliding window " + c.slidingWindow()
                        + (c.windowFromLayer() > 0 ? " from layer " + c.windowFromLayer() : "") : ""));
        line(s, "vocabulary", c.vocabSize() + (c.tieWordEmbeddings() ? " (tied embeddings)" : ""));
        line(s, "context", c.contextLength() + " tokens (max_position_embeddings " + c.maxPositionEmbeddings()
                + ", rope " + c.ropeScaling().type().configName()
                + (c.ropeScaling().factor() != 1 ? String.format(Locale.ROOT, " ×%.4g", c.ropeScaling().factor()) : "")
                + ", theta " + (c.ropeTheta() == Math.rint(c.ropeTheta()) ? Long.toString((long) c.ropeTheta())
                        : Double.toString(c.ropeTheta())) + ")");
        line(s, "parameters", String.format(Locale.ROOT, "%,d (%s)", parameters, human(parameters)));
        line(s, "stored dtype", storedDtype());
        bytesByDtype.forEach((d, b) -> line(s, "  " + d.name() + " bytes", String.format(Locale.ROOT, "%,d (%s)", b,
                humanBytes(b))));
        moe.ifPresent(m -> {
            line(s, "carved", String.format(Locale.ROOT, "S%dA%dE%d: %d shared + %d of %d routed experts per token, "
                    + "%d neurons each (method %s)", m.shared(), m.active(), m.experts(), m.shared(), m.active(),
                    m.routed(), m.expertSize(), m.method()));
            if (m.hasLayerBudgets()) {
                line(s, "routed per layer", m.activePerLayer().stream().map(String::valueOf)
                        .collect(Collectors.joining(", ")) + " (the same total as " + m.active()
                        + " in every layer)");
            }
            line(s, "active parameters", String.format(Locale.ROOT, "%,d per token (%.1f%%)", activeParameters,
                    100.0 * activeParameters / parameters));
        });
        return s.toString();
    }

    private static void line(StringBuilder s, String key, String value) {
        s.append(String.format(Locale.ROOT, "%-22s %s%n", key, value));
    }

    private static String human(long n) {
        if (n >= 1_000_000_000L) {
            return String.format(Locale.ROOT, "%.2fB", n / 1e9);
        }
        return n >= 1_000_000 ? String.format(Locale.ROOT, "%.2fM", n / 1e6) : String.format(Locale.ROOT, "%.1fK", n / 1e3);
    }

    private static String humanBytes(long b) {
        return b >= 1L << 30 ? String.format(Locale.ROOT, "%.2f GiB", b / (double) (1L << 30))
                : String.format(Locale.ROOT, "%.2f MiB", b / (double) (1L << 20));
    }
}
