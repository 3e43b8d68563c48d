package dev.cmoe.deploy.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.deploy.Cli;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `cmoe adapt` refuses bad flags and models with one clear line, before reading the corpus. */
class AdaptCommandTest {

    /** Runs the command line and returns {exit code, stderr}. */
    static Object[] run(String... args) {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        PrintStream old = System.err;
        int exit;
        try {
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            exit = Cli.run(args);
        } finally {
            System.setErr(old);
        }
        return new Object[] {exit, err.toString(StandardCharsets.UTF_8)};
    }

    static void assertRefused(String expected, String... args) {
        Object[] r = run(args);
        String err = (String) r[1];
        assertEquals(2, r[0], err);
        assertTrue(err.startsWith("cmoe adapt: ") && err.contains(expected), err);
        assertEquals(1, err.strip().lines().count(), "one line, no stack trace: " + err);
    }

    @Test
    void badFlagsAndDenseModelsAreRefusedWithTheirNames(@TempDir Path tmp) throws Exception {
        Path dense = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), tmp.resolve("dense"), DType.F32);
        String out = tmp.resolve("out").toString();
        String m = dense.toString();
        assertRefused("--samples must be at least 1", "adapt", "--model", m, "--out", out, "--samples", "0");
        assertRefused("--seqlen must be at least 2", "adapt", "--model", m, "--out", out, "--seqlen", "1");
        assertRefused("LoRA rank must be at least 1", "adapt", "--model", m, "--out", out, "--lora-rank", "0");
        assertRefused("LoRA dropout must be in [0, 1)", "adapt", "--model", m, "--out", out, "--lora-dropout", "1");
        assertRefused("--scale-lr must be a positive number", "adapt", "--model", m, "--out", out, "--scale-lr", "0");
        assertRefused("--bias-speed must be >= 0", "adapt", "--model", m, "--out", out, "--bias-speed", "-1");
        assertRefused("is not a model directory", "adapt", "--model", tmp.toString(), "--out", out);
        assertRefused("carve it first", "adapt", "--model", m, "--out", out);
    }
}
