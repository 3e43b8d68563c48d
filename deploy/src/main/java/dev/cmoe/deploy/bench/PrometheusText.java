package dev.cmoe.deploy.bench;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A reader for the Prometheus text exposition format, just enough for the samples the server
 * writes ({@code name{label="value",...} number}); comments and unparsable lines are skipped.
 */
public final class PrometheusText {

    /** One sample: metric name, its labels, its value. */
    public record Sample(String name, Map<String, String> labels, double value) {
        public String label(String key) {
            return labels.get(key);
        }
    }

    private PrometheusText() {
    }

    /** The samples of {@code text} whose names start with one of {@code prefixes} (all when empty). */
    public static List<Sample> parse(String text, String... prefixes) {
        List<Sample> out = new ArrayList<>();
        for (String line : text.split("\n")) {
            String l = line.strip();
            if (l.isEmpty() || l.startsWith("#") || !wanted(l, prefixes)) {
                continue;
            }
            Sample s = sample(l);
            if (s != null) {
                out.add(s);
            }
        }
        return out;
    }

    private static boolean wanted(String line, String[] prefixes) {
        if (prefixes.length == 0) {
            return true;
        }
        for (String p : prefixes) {
            if (line.startsWith(p)) {
                return true;
            }
        }
        return false;
    }

    private static Sample sample(String line) {
        int brace = line.indexOf('{');
        int space = line.indexOf(' ');
        if (space < 0) {
            return null;
        }
        String name;
        Map<String, String> labels = new LinkedHashMap<>();
        int valueFrom;
        if (brace >= 0 && brace < space) {
            name = line.substring(0, brace);
            int i = brace + 1;
            while (i < line.length() && line.charAt(i) != '}') {
                int eq = line.indexOf('=', i);
                if (eq < 0 || eq + 1 >= line.length() || line.charAt(eq + 1) != '"') {
                    return null;
                }
                String key = line.substring(i, eq).strip();
                StringBuilder value = new StringBuilder();
                int j = eq + 2;
                for (; j < line.length() && line.charAt(j) != '"'; j++) {
                    char c = line.charAt(j);
                    if (c == '\\' && j + 1 < line.length()) {
                        char n = line.charAt(++j);
                        value.append(n == 'n' ? '\n' : n);
                    } else {
                        value.append(c);
                    }
                }
                labels.put(key, value.toString());
                i = j + 1;
                if (i < line.length() && line.charAt(i) == ',') {
                    i++;
                }
            }
            valueFrom = i + 1;
        } else {
            name = line.substring(0, space);
            valueFrom = space;
        }
        String[] rest = line.substring(Math.min(valueFrom, line.length())).strip().split("\\s+");
        if (rest.length == 0 || rest[0].isEmpty()) {
            return null;
        }
        try {
            return new Sample(name, labels, value(rest[0]));
        } catch (NumberFormatException e) {
            return null;
        }
    }

    private static double value(String v) {
        return switch (v) {
            case "+Inf" -> Double.POSITIVE_INFINITY;
            case "-Inf" -> Double.NEGATIVE_INFINITY;
            case "NaN" -> Double.NaN;
            default -> Double.parseDouble(v);
        };
    }
}
