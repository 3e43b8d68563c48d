package dev.cmoe.coverage;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Locale;

/**
 * Prints line coverage per module from each module's JaCoCo CSV report at the end of the build, so
 * the test command shows the figures without opening a report, and writes the same table to a file
 * (via a temp file and a rename).
 *
 * <p>Arguments: the repository root, the summary file, then the module directories in build order.
 */
public final class CoverageSummary {
    private CoverageSummary() {
    }

    /** Lines missed and covered in one module's report. */
    record Lines(long missed, long covered) {
        double percent() {
            long total = missed + covered;
            return total == 0 ? 0 : 100.0 * covered / total;
        }
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 3) {
            throw new IllegalArgumentException("usage: CoverageSummary ROOT SUMMARY_FILE MODULE...");
        }
        Path root = Path.of(args[0]);
        StringBuilder table = new StringBuilder("Line coverage by module (JaCoCo, this build's tests):\n");
        long missed = 0;
        long covered = 0;
        for (int i = 2; i < args.length; i++) {
            Path csv = root.resolve(args[i]).resolve("target/site/jacoco/jacoco.csv");
            if (!Files.isRegularFile(csv)) {
                table.append(String.format(Locale.ROOT, "  %-8s  no report (no tests ran)%n", args[i]));
                continue;
            }
            Lines l = lines(csv);
            missed += l.missed();
            covered += l.covered();
            table.append(String.format(Locale.ROOT, "  %-8s %6.1f%%  (%,d of %,d lines)%n", args[i], l.percent(),
                    l.covered(), l.missed() + l.covered()));
        }
        Lines all = new Lines(missed, covered);
        table.append(String.format(Locale.ROOT, "  %-8s %6.1f%%  (%,d of %,d lines)%n", "total", all.percent(),
                all.covered(), all.missed() + all.covered()));
        System.out.print(table);
        Path out = Path.of(args[1]);
        Files.createDirectories(out.toAbsolutePath().getParent());
        Path tmp = out.resolveSibling(out.getFileName() + ".tmp");
        Files.writeString(tmp, table, StandardCharsets.UTF_8);
        Files.move(tmp, out, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** Sums the LINE_MISSED and LINE_COVERED columns of a JaCoCo CSV report. */
    static Lines lines(Path csv) throws IOException {
        List<String> rows = Files.readAllLines(csv, StandardCharsets.UTF_8);
        if (rows.isEmpty()) {
            throw new IOException(csv + " is empty, expected a JaCoCo CSV report with a header row");
        }
        List<String> header = List.of(rows.getFirst().split(","));
        int missedCol = header.indexOf("LINE_MISSED");
        int coveredCol = header.indexOf("LINE_COVERED");
        if (missedCol < 0 || coveredCol < 0) {
            throw new IOException(csv + " has columns " + header + ", expected LINE_MISSED and LINE_COVERED");
        }
        long missed = 0;
        long covered = 0;
        for (String row : rows.subList(1, rows.size())) {
            String[] cells = row.split(",");
            missed += Long.parseLong(cells[missedCol]);
            covered += Long.parseLong(cells[coveredCol]);
        }
        return new Lines(missed, covered);
    }
}
