package dev.cmoe.experts.placement;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Memory sizes as operators write them ({@code 512MiB}, {@code 16G}, {@code 1073741824}) and read them back. */
public final class Bytes {
    private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([kmgt]?)(i?)(b?)",
            Pattern.CASE_INSENSITIVE);

    private Bytes() {
    }

    /**
     * Parses a size: a number of bytes, optionally with a unit K, M, G or T (powers of 1024, with or
     * without a trailing {@code iB}/{@code B}: {@code 16G} = {@code 16GiB} = {@code 16GB}).
     */
    public static long parse(String text) {
        Matcher m = SIZE.matcher(text.strip());
        if (!m.matches() || m.group(2).isEmpty() && !m.group(3).isEmpty()) {
            throw new IllegalArgumentException("'" + text + "' is not a size in bytes (e.g. 1073741824, 512MiB, 16G)");
        }
        int shift = switch (m.group(2).toLowerCase(Locale.ROOT)) {
            case "" -> 0;
            case "k" -> 10;
            case "m" -> 20;
            case "g" -> 30;
            default -> 40;
        };
        double value = Double.parseDouble(m.group(1)) * Math.pow(2, shift);
        if (value >= Long.MAX_VALUE || value != Math.floor(value)) {
            throw new IllegalArgumentException("'" + text + "' is not a whole number of bytes below 2^63");
        }
        return (long) value;
    }

    /** {@code 196608} → {@code 192.0 KiB}; {@link Long#MAX_VALUE} → {@code unlimited}. */
    public static String format(long bytes) {
        if (bytes == Long.MAX_VALUE) {
            return "unlimited";
        }
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }
}
