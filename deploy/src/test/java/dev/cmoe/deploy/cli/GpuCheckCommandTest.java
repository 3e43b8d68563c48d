package dev.cmoe.deploy.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.pytorch.jni.LibUtils;
import dev.cmoe.deploy.bench.BenchFixture;
import dev.cmoe.model.EngineNatives;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code cmoe gpu-check} serves the routed experts on the device it is given and compares with
 * the in-process forward; run here with {@code --device cpu}, the path a GPU takes bar the device.
 * {@code CMOE_LIBTORCH} makes a fresh JVM load the engine from the folder it names.
 */
@Timeout(240)
class GpuCheckCommandTest {
    @TempDir
    static Path tmp;

    private static final Path carved = BenchFixture.carved();

    @Test
    void expertsServedOnTheDeviceAgreeWithTheInProcessForward() {
        String[] r = cli("gpu-check", "--model", carved.toString(), "--device", "cpu", "--tokens", "6", "--repeats",
                "1");
        assertEquals("0", r[0], r[2]);
        assertTrue(r[1].contains("natives: the class path's CPU build"), r[1]);
        assertTrue(r[1].contains("hosts 14 routed experts (2 layers × 7)"), r[1]); // all on the one device
        assertTrue(r[1].matches("(?s).*logits: max \\|diff\\| \\S+, \\S+ of max \\|logit\\| .*: PASS.*"), r[1]);
        assertTrue(r[1].contains("greedy tokens: equal: PASS"), r[1]);
        assertTrue(r[1].contains("| expert actors | cpu |"), r[1]);
    }

    @Test
    void refusesADenseModelAndAGpuTheEngineDoesNotSee() {
        String[] dense = cli("gpu-check", "--model", BenchFixture.dense().toString(), "--device", "cpu");
        assertEquals("2", dense[0]);
        assertTrue(dense[2].contains("is dense"), dense[2]);
        String[] gpu = cli("gpu-check", "--model", carved.toString(), "--device", "cuda:0");
        assertEquals("2", gpu[0]);
        assertTrue(gpu[2].contains("asks for gpu:0") && gpu[2].contains(EngineNatives.ENV), gpu[2]);
    }

    @Test
    void agreementIsTheLargestDifferenceOverTheLargestLogit() {
        GpuCheckCommand.Agreement same = GpuCheckCommand.Agreement.of(new float[] {1, -4, 2}, new float[] {1, -4, 2});
        assertEquals(0, same.maxDiff());
        assertTrue(same.within(0));
        GpuCheckCommand.Agreement off = GpuCheckCommand.Agreement.of(new float[] {1, -4, 2}, new float[] {1, -4, 2.5f});
        assertEquals(0.5, off.maxDiff(), 1e-12);
        assertEquals(0.125, off.relative(), 1e-12);
        assertTrue(off.within(0.125));
        assertFalse(off.within(0.1));
        assertFalse(GpuCheckCommand.Agreement.of(new float[] {1, 2}, new float[] {Float.NaN, 2}).within(1e9));
        assertEquals(-1, GpuCheckCommand.firstDifference(new int[] {3, 4}, new int[] {3, 4}));
        assertEquals(1, GpuCheckCommand.firstDifference(new int[] {3, 4}, new int[] {3, 5}));
        assertEquals(2, GpuCheckCommand.firstDifference(new int[] {3, 4}, new int[] {3, 4, 5}));
    }

    @Test
    void aLocalLibtorchNamedByTheVariableIsTheOneTheEngineLoads() throws Exception {
        // a libtorch folder of this build's own CPU natives, as an unpacked archive lays it out
        Engine.getInstance();
        Path natives = Path.of(LibUtils.getLibtorchPath());
        Path root = Files.createDirectories(tmp.resolve("libtorch"));
        Path lib = Files.createDirectories(root.resolve("lib"));
        try (Stream<Path> files = Files.list(natives)) {
            for (Path f : files.filter(f -> f.getFileName().toString().matches("lib(torch|torch_cpu|c10|gomp).*"))
                    .toList()) {
                Files.createSymbolicLink(lib.resolve(f.getFileName()), f);
            }
        }
        Files.writeString(root.resolve("build-version"), "2.7.1+cpu\n");
        String[] ok = fork(root, "gpu-check", "--model", carved.toString(), "--device", "cpu", "--tokens", "3",
                "--repeats", "1");
        assertEquals("0", ok[0], ok[1]);
        assertTrue(ok[1].contains("natives: local libtorch (" + EngineNatives.ENV + ", cpu) at " + lib), ok[1]);
        assertTrue(ok[1].contains("greedy tokens: equal: PASS"), ok[1]);

        Files.writeString(root.resolve("build-version"), "2.11.0+cu130\n");
        String[] refused = fork(root, "gpu-check", "--model", carved.toString(), "--device", "cpu");
        assertEquals("2", refused[0], refused[1]);
        assertTrue(refused[1].contains(EngineNatives.ENV + "=" + root + ": libtorch 2.11.0+cu130"), refused[1]);
    }

    private static String[] cli(String... args) {
        CliRun r = CliRun.of(args);
        return new String[] {Integer.toString(r.exit()), r.out(), r.err()};
    }

    /** {@code cmoe ARGS} in a fresh JVM with {@code CMOE_LIBTORCH=libtorch}: exit code and output. */
    private static String[] fork(Path libtorch, String... args) throws Exception {
        String java = ProcessHandle.current().info().command().orElse("java");
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        List<String> cmd = new ArrayList<>(List.of(java, "-Xmx512m", "--enable-native-access=ALL-UNNAMED",
                "-Dai.djl.offline=true", "-Dai.djl.pytorch.num_threads=1", "-cp", cp, "dev.cmoe.deploy.Cli"));
        cmd.addAll(List.of(args));
        Path log = Files.createTempFile(tmp, "fork", ".log");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().put(EngineNatives.ENV, libtorch.toString());
        Process p = pb.start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("cmoe " + String.join(" ", args) + " did not end in 120 s:\n"
                    + Files.readString(log));
        }
        return new String[] {Integer.toString(p.exitValue()), Files.readString(log)};
    }
}
