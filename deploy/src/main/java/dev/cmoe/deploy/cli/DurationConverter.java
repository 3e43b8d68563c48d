package dev.cmoe.deploy.cli;

import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine;

/** Parses picocli duration flags: 500ms, 30s, 5m, 1h (and ISO-8601 PT30S). */
public final class DurationConverter implements CommandLine.ITypeConverter<Duration> {
    private static final Pattern SIMPLE = Pattern.compile("(\\d+(?:\\.\\d+)?)(ms|s|m|h)");

    @Override
    public Duration convert(String value) {
        Matcher m = SIMPLE.matcher(value.strip());
        if (m.matches()) {
            double n = Double.parseDouble(m.group(1));
            long ms = Math.round(n * switch (m.group(2)) {
                case "ms" -> 1;
                case "s" -> 1_000;
                case "m" -> 60_000;
                default -> 3_600_000;
            });
            return Duration.ofMillis(ms);
        }
        try {
            return Duration.parse(value.strip());
        } catch (java.time.format.DateTimeParseException e) {
            throw new CommandLine.TypeConversionException("'" + value + "' is not a duration like 500ms, 30s, 5m, 1h");
        }
    }
}
