package dev.cmoe.deploy.bench;

import dev.cmoe.carve.CarveListener;
import dev.cmoe.carve.CarveOptions;
import dev.cmoe.carve.Carver;
import dev.cmoe.deploy.cli.BenchCommand;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine;

/**
 * Tiny models on disk for the bench tests (a dense {@link TinyCheckpoint} and its S1A2E8 carving,
 * written once per test JVM) and a helper that runs {@code cmoe bench} on them quietly.
 */
public final class BenchFixture {
    private static Path root;

    private BenchFixture() {
    }

    private static synchronized Path root() {
        if (root == null) {
            try {
                Path tmp = Files.createTempDirectory("cmoe-bench-test");
                tmp.toFile().deleteOnExit();
                Path dense = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), tmp.resolve("dense"),
                        DType.F32);
                Path text = TinyCheckpoint.calibrationText(tmp.resolve("prompts.txt"));
                Carver.carve(dense, text, tmp.resolve("carved"), CarveOptions.of(1, 2, 8).withCalibration(4, 32, 7),
                        CarveListener.NONE);
                root = tmp;
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return root;
    }

    /** The dense tiny checkpoint. */
    public static Path dense() {
        return root().resolve("dense");
    }

    /** Its S1A2E8 carving (read-only: shared by every test of the JVM). */
    public static Path carved() {
        return root().resolve("carved");
    }

    /** Text that the fixture tokenizer knows, to cut prompts from. */
    static Path prompts() {
        return root().resolve("prompts.txt");
    }

    /** The outcome of one bench run: its report and what it printed. */
    record Run(BenchReport report, String printed, Path out) {
    }

    /** Runs {@code cmoe bench} with {@code args} plus quiet output under {@code out}. */
    static Run bench(Path out, String... args) throws Exception {
        List<String> all = new ArrayList<>(List.of(args));
        all.addAll(List.of("--prompts", prompts().toString(), "--out", out.toString(), "--quiet",
                "--scrape-interval", "100ms"));
        BenchCommand bench = new BenchCommand();
        new CommandLine(bench).parseArgs(all.toArray(String[]::new));
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        BenchReport report = bench.run(new PrintStream(printed, true, StandardCharsets.UTF_8));
        return new Run(report, printed.toString(StandardCharsets.UTF_8), out);
    }
}
