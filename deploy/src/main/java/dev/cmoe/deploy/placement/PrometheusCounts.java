package dev.cmoe.deploy.placement;

import java.util.HashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads the per-expert token counters out of Prometheus text exposition (what {@code cmoe serve
 * --metrics-port} serves at {@code /metrics}), so the planner can rebalance on live traffic.
 *
 * <p>Micrometer's {@code cmoe.expert.tokens} counter with tags {@code layer} and {@code expert}
 * is exposed as {@code cmoe_expert_tokens_total{expert="3",layer="0"} 42.0}. Samples that carry
 * further labels (a worker, a device) are summed per (layer, expert).
 */
public final class PrometheusCounts {
    /** The exposed name of {@code ServerMetrics.expertTokens}. */
    public static final String METRIC = "cmoe_expert_tokens_total";

    // name, optional {labels}, value, optional timestamp
    private static final Pattern SAMPLE = Pattern.compile(
            "([a-zA-Z_:][a-zA-Z0-9_:]*)\\s*(?:\\{(.*)\\})?\\s+(\\S+)(?:\\s+\\S+)?\\s*");
    private static final Pattern LABEL = Pattern.compile(
            "\\s*([a-zA-Z_][a-zA-Z0-9_]*)\\s*=\\s*\"((?:[^\"\\\\]|\\\\.)*)\"\\s*,?");

    private PrometheusCounts() {
    }

    /**
     * Token counts per (layer, expert) found in {@code text}.
     *
     * @param text Prometheus text format 0.0.4 or OpenMetrics
     * @param source what to call the text in error messages (a URL, a file)
     * @return (layers, experts) counts sized by the largest layer and expert seen; unseen ones are 0
     */
    public static double[][] expertTokens(String text, String source) {
        Map<Long, Double> byKey = new HashMap<>(); // layer << 32 | expert -> tokens
        int layers = 0;
        int experts = 0;
        String[] lines = text.split("\r?\n");
        for (int i = 0; i < lines.length; i++) {
            String line = lines[i].strip();
            if (line.isEmpty() || line.startsWith("#") || !line.startsWith(METRIC)) {
                continue;
            }
            Matcher m = SAMPLE.matcher(line);
            if (!m.matches() || !m.group(1).equals(METRIC)) {
                if (m.matches()) {
                    continue; // another metric whose name starts the same way
                }
                throw new IllegalArgumentException(source + " line " + (i + 1) + ": not a Prometheus sample: " + line);
            }
            Map<String, String> labels = labels(m.group(2) == null ? "" : m.group(2), source, i + 1);
            int layer = index(labels, "layer", source, i + 1);
            int expert = index(labels, "expert", source, i + 1);
            double value;
            try {
                value = Double.parseDouble(m.group(3));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(source + " line " + (i + 1) + ": value '" + m.group(3)
                        + "' is not a number", e);
            }
            if (!Double.isFinite(value) || value < 0) {
                throw new IllegalArgumentException(source + " line " + (i + 1) + ": token count " + m.group(3)
                        + " is not a finite count ≥ 0");
            }
            byKey.merge(((long) layer << 32) | expert, value, Double::sum);
            layers = Math.max(layers, layer + 1);
            experts = Math.max(experts, expert + 1);
        }
        if (byKey.isEmpty()) {
            throw new IllegalArgumentException(source + " has no " + METRIC + " samples (is it the /metrics of a"
                    + " `cmoe serve` of a carved model?)");
        }
        double[][] counts = new double[layers][experts];
        byKey.forEach((key, value) -> counts[(int) (key >>> 32)][(int) (long) key] = value);
        return counts;
    }

    private static Map<String, String> labels(String text, String source, int line) {
        Map<String, String> out = new HashMap<>();
        Matcher m = LABEL.matcher(text);
        int at = 0;
        while (at < text.length() && m.find(at) && m.start() == at) {
            out.put(m.group(1), m.group(2));
            at = m.end();
        }
        if (!text.substring(at).isBlank()) {
            throw new IllegalArgumentException(source + " line " + line + ": cannot read labels {" + text + "}");
        }
        return out;
    }

    private static int index(Map<String, String> labels, String name, String source, int line) {
        String v = labels.get(name);
        if (v == null) {
            throw new IllegalArgumentException(source + " line " + line + ": " + METRIC + " sample has no '" + name
                    + "' label");
        }
        try {
            int i = Integer.parseInt(v);
            if (i >= 0) {
                return i;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new IllegalArgumentException(source + " line " + line + ": label " + name + "=\"" + v
                + "\" is not an index ≥ 0");
    }
}
