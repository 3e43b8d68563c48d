package dev.cmoe.deploy.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.carve.CarveListener;
import dev.cmoe.carve.CarveOptions;
import dev.cmoe.carve.CarveReport;
import dev.cmoe.carve.Carver;
import dev.cmoe.deploy.placement.LoadSources;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.placement.ExpertLoads;
import dev.cmoe.experts.placement.ExpertMemory;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** `cmoe plan` on a checkpoint carved by the real carver (S1A2E8: 2 layers × 7 routed experts of 12 neurons). */
@Timeout(120)
class PlanCommandTest {
    @TempDir
    static Path tmp;
    static Path carved;
    static CarveReport report;

    @BeforeAll
    static void carve() throws Exception {
        Path dense = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), tmp.resolve("dense"), DType.F32);
        Path text = TinyCheckpoint.calibrationText(tmp.resolve("calib.txt"));
        carved = tmp.resolve("carved");
        report = Carver.carve(dense, text, carved, CarveOptions.of(1, 2, 8).withCalibration(4, 32, 7),
                CarveListener.NONE);
    }

    /** Runs the command line, returning {exit code, stdout, stderr}. */
    private static Object[] cli(String... args) {
        CliRun r = CliRun.of(args);
        return new Object[] {r.exit(), r.out(), r.err()};
    }

    @Test
    void loadsAndSizesComeFromTheCarvedCheckpoint() throws Exception {
        ExpertLoads loads = LoadSources.resolve(LoadSources.CARVE_REPORT, carved, 2, 7);
        for (CarveReport.Layer layer : report.layers()) {
            long total = 0;
            for (long c : layer.loadsAfter()) {
                total += c;
            }
            for (int e = 0; e < 7; e++) {
                assertEquals((double) layer.loadsAfter()[e] / total, loads.share(layer.layer(), e), 1e-12);
            }
        }
        ExpertMemory memory = ExpertMemory.of(carved);
        assertEquals(2, memory.layers());
        assertEquals(7, memory.experts());
        assertEquals(3L * 12 * 64 * Float.BYTES, memory.of(1, 6), "gate, up (12 × 64) and down (64 × 12) as float32");
    }

    @Test
    void writesAValidPlanAndComparesWithRoundRobin() throws Exception {
        Path out = tmp.resolve("plans/plan.json");
        Object[] r = cli("plan", "--model", carved.toString(), "--devices", "w1/cpu,w2/gpu:0,w2/gpu:1",
                "--spare-slots", "3", "--memory-per-device", "64KiB", "--out", out.toString());
        String stdout = (String) r[1];
        assertEquals(0, r[0], r[2] + stdout);
        PlacementPlan plan = PlacementPlan.read(out);
        assertEquals(2, plan.layers());
        assertEquals(7, plan.experts());
        assertEquals(17, plan.assignments().stream().mapToInt(a -> a.devices().size()).sum(), "14 experts + 3 spare");
        ExpertLoads loads = LoadSources.resolve(LoadSources.CARVE_REPORT, carved, 2, 7);
        PlacementPlan.Assignment a = plan.assignments().stream()
                .filter(x -> x.id().equals(new ExpertId(1, 2))).findFirst().orElseThrow();
        assertEquals(loads.share(1, 2), a.load(), 1e-6);
        assertTrue(stdout.contains("step (Σ layer max / Σ layer mean)"), stdout);
        assertTrue(stdout.contains("w2/gpu:1"), stdout);
        assertTrue(stdout.contains("64.0 KiB"), stdout);
        try (var files = Files.list(out.getParent())) {
            assertEquals(1, files.count(), "no temporary file left beside the plan");
        }
    }

    @Test
    void errorsNameTheProblemAndWriteNothing() {
        Path out = tmp.resolve("bad/plan.json");
        Object[] small = cli("plan", "--model", carved.toString(), "--devices", "w1/cpu,w2/cpu",
                "--memory-per-device", "40KiB", "--out", out.toString());
        assertEquals(2, small[0]);
        assertTrue(((String) small[2]).contains("experts do not fit: 14 expert replicas"), (String) small[2]);
        Object[] slots = cli("plan", "--model", carved.toString(), "--devices", "w1/cpu,w2/cpu",
                "--slots-per-device", "6", "--out", out.toString());
        assertEquals(2, slots[0]);
        assertTrue(((String) slots[2]).contains("= 12 slots, fewer than the 14 experts"), (String) slots[2]);
        Object[] loads = cli("plan", "--model", carved.toString(), "--devices", "w1/cpu", "--loads",
                tmp.resolve("missing.txt").toString(), "--out", out.toString());
        assertEquals(2, loads[0]);
        assertTrue(((String) loads[2]).contains("no such file"), (String) loads[2]);
        assertFalse(Files.exists(out.getParent()), "nothing written on error");
    }
}
