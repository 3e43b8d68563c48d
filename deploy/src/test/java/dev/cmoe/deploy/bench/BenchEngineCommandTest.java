package dev.cmoe.deploy.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.deploy.Cli;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@code cmoe bench-engine} end to end on tiny shapes: the fixture model with its carving and a
 * small synthetic model at two carvings. Speed is not asserted (machines are shared); the tables
 * must hold a positive, finite figure for every batch and variant.
 */
@Timeout(120)
class BenchEngineCommandTest {
    private static final Pattern RATIO = Pattern.compile("(\\d+\\.\\d+)x \\[(\\d+\\.\\d+)-(\\d+\\.\\d+)]");

    @Test
    void printsDecodeAndFfnTablesForEveryBatchAndVariant() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrintStream old = System.out;
        int exit;
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            exit = Cli.run("bench-engine", "--model", BenchFixture.dense().toString(), "--carved",
                    BenchFixture.carved().toString(), "--batch", "1,3", "--steps", "2", "--prompt", "4",
                    "--repeats", "2", "--ffn-iterations", "2", "--hidden", "64", "--intermediate", "96",
                    "--layers", "1", "--heads", "4", "--vocab", "50", "--experts", "8", "--shared", "1",
                    "--active", "1,5");
        } finally {
            System.setOut(old);
        }
        String printed = out.toString(StandardCharsets.UTF_8);
        assertEquals(0, exit, printed);
        assertTrue(printed.contains("S1A2E8 (38%)"), printed);
        assertTrue(printed.contains("S1A1E8 (25%)") && printed.contains("S1A5E8 (75%)"), printed);
        Matcher m = RATIO.matcher(printed);
        int ratios = 0;
        while (m.find()) {
            double median = Double.parseDouble(m.group(1));
            assertTrue(median > 0 && Double.parseDouble(m.group(2)) <= median
                    && median <= Double.parseDouble(m.group(3)), m.group());
            ratios++;
        }
        // decode: 2 batches × (1 carving of the fixture + 2 synthetic carvings)
        assertEquals(6, ratios, printed);
        assertTrue(printed.contains("== FFN only (layer 0)"), printed);
    }

    @Test
    void perExpertAddsTheYardstickAndCountsEngineCallsAndThreadCountsTakeTurns() {
        String printed = run("bench-engine", "--model", BenchFixture.dense().toString(), "--carved",
                BenchFixture.carved().toString(), "--skip-synthetic", "--per-expert", "--batch", "1,3", "--steps", "2",
                "--prompt", "4", "--repeats", "2", "--ffn-iterations", "2");
        assertTrue(printed.contains("S1A2E8 per-expert"), printed);
        Matcher g = Pattern.compile("grouped / per-expert, S1A2E8 \\(38%\\):  batch 1 (\\d+\\.\\d+)x.*batch 3 (\\d+\\.\\d+)x")
                .matcher(printed);
        assertTrue(g.find(), printed);
        // engine calls: one row per batch, dense makes 6, the per-expert path more than the grouped one
        Matcher calls = Pattern.compile("(?m)^\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)$").matcher(
                printed.substring(printed.indexOf("== engine calls per layer")));
        int rows = 0;
        while (calls.find() && rows < 2) {
            assertEquals(6, Integer.parseInt(calls.group(2)), calls.group());
            assertTrue(Integer.parseInt(calls.group(3)) < Integer.parseInt(calls.group(4)), calls.group());
            rows++;
        }
        assertEquals(2, rows, printed);

        String threads = run("bench-engine", "--model", BenchFixture.dense().toString(), "--compare-threads", "1,2",
                "--batch", "1,3", "--steps", "2", "--prompt", "4", "--repeats", "2", "--hidden", "64",
                "--intermediate", "96", "--layers", "1", "--heads", "4", "--vocab", "50");
        assertEquals(2, threads.split("== dense decode by intra-op threads", -1).length - 1, threads);
        Matcher r = RATIO.matcher(threads);
        int ratios = 0;
        while (r.find()) {
            assertTrue(Double.parseDouble(r.group(1)) > 0, r.group());
            ratios++;
        }
        assertEquals(2 * 2 * 2, ratios, threads); // 2 models × 2 batches × 2 thread counts
    }

    private static String run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrintStream old = System.out;
        int exit;
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            exit = Cli.run(args);
        } finally {
            System.setOut(old);
        }
        String printed = out.toString(StandardCharsets.UTF_8);
        assertEquals(0, exit, printed);
        return printed;
    }
}
