package dev.cmoe.coverage;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Prints line coverage per module from each module's JaCoCo CSV report at the end of the build, so
 * the test command shows the figures without opening a report, and writes the same table to a file
 * (via a temp file and a rename).
 *
 * <p>It also prints the suite's closing line, {@code tests: N passed, N failed, N skipped}, summed
 * over the surefire reports this build wrote (reports older than the build's start are ignored).
 *
 * <p>Arguments: the repository root, the summary file, the build's start as an ISO instant, then
 * the module directories in build order.
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
        if (args.length < 4) {
            throw new IllegalArgumentException("usage: CoverageSummary ROOT SUMMARY_FILE BUILD_START MODULE...");
        }
        Path root = Path.of(args[0]);
        Instant since = Instant.parse(args[2]);
        StringBuilder table = new StringBuilder("Line coverage by module (JaCoCo, this build's tests):\n");
        long missed = 0;
        long covered = 0;
        for (int i = 3; i < args.length; i++) {
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
        Tests tests = Tests.NONE;
        for (int i = 3; i < args.length; i++) {
            for (String dir : List.of("target/surefire-reports", "target/surefire-reports-fuzz")) {
                tests = tests.plus(tests(root.resolve(args[i]).resolve(dir), since));
            }
        }
        // the suite's closing line, over every module's surefire reports (fuzz regressions included)
        table.append(String.format(Locale.ROOT, "tests: %d passed, %d failed, %d skipped%n", tests.passed(),
                tests.failed(), tests.skipped()));
        System.out.print(table);
        Path out = Path.of(args[1]);
        Files.createDirectories(out.toAbsolutePath().getParent());
        Path tmp = out.resolveSibling(out.getFileName() + ".tmp");
        Files.writeString(tmp, table, StandardCharsets.UTF_8);
        Files.move(tmp, out, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    /** Test counts of surefire reports. */
    record Tests(long run, long failed, long skipped) {
        static final Tests NONE = new Tests(0, 0, 0);

        Tests plus(Tests o) {
            return new Tests(run + o.run, failed + o.failed, skipped + o.skipped);
        }

        long passed() {
            return run - failed - skipped;
        }
    }

    private static final Pattern SUITE = Pattern.compile("<testsuite\\b[^>]*>");

    /** The integer attribute {@code name} of a {@code <testsuite>} tag. */
    private static long attribute(String tag, String name, Path file) throws IOException {
        Matcher m = Pattern.compile("\\b" + name + "=\"(\\d+)\"").matcher(tag);
        if (!m.find()) {
            throw new IOException(file + ": the <testsuite> tag has no " + name + " count");
        }
        return Long.parseLong(m.group(1));
    }

    /** Sums the {@code TEST-*.xml} reports of one surefire report directory (none: zero). */
    static Tests tests(Path reports, Instant since) throws IOException {
        if (!Files.isDirectory(reports)) {
            return Tests.NONE;
        }
        Tests sum = Tests.NONE;
        try (DirectoryStream<Path> files = Files.newDirectoryStream(reports, "TEST-*.xml")) {
            for (Path f : files) {
                if (Files.getLastModifiedTime(f).toInstant().isBefore(since)) {
                    continue; // left by an earlier build
                }
                String head;
                try (var in = Files.newInputStream(f)) {
                    head = new String(in.readNBytes(4096), StandardCharsets.UTF_8);
                }
                Matcher m = SUITE.matcher(head);
                if (!m.find()) {
                    throw new IOException(f + " has no <testsuite> tag");
                }
                String tag = m.group();
                long failed = attribute(tag, "failures", f) + attribute(tag, "errors", f);
                sum = sum.plus(new Tests(attribute(tag, "tests", f), failed, attribute(tag, "skipped", f)));
            }
        }
        return sum;
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
