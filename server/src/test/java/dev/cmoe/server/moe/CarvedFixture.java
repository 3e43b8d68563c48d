package dev.cmoe.server.moe;

import dev.cmoe.carve.CarveListener;
import dev.cmoe.carve.CarveOptions;
import dev.cmoe.carve.Carver;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

/**
 * A small carved checkpoint on disk, made by the real carver from a {@link TinyCheckpoint}
 * model: S1A2E8 of intermediate 96, so N_r = 7 routed experts of 12 neurons (not a power of
 * two), two layers, with per-layer budgets ({@link #ACTIVE} is their mean). Written once per test
 * JVM; tests only read it.
 */
public final class CarvedFixture {
    public static final int SHARED = 1;
    public static final int ACTIVE = 2;
    public static final int EXPERTS = 8;
    private static Path dir;
    private static Path uniform;

    private CarvedFixture() {
    }

    /** The carved model directory. */
    public static synchronized Path dir() {
        if (dir == null) {
            // per-layer budgets, so that every served path routes each layer with its own N_k
            dir = carve(CarveOptions.Budgets.ADAPTIVE);
        }
        return dir;
    }

    /** The same carving with {@link #ACTIVE} routed experts in every layer: for tests that count on N_k per token. */
    public static synchronized Path uniformDir() {
        if (uniform == null) {
            uniform = carve(CarveOptions.Budgets.UNIFORM);
        }
        return uniform;
    }

    private static Path carve(CarveOptions.Budgets budgets) {
        try {
            Path tmp = Files.createTempDirectory("cmoe-carved-serve");
            tmp.toFile().deleteOnExit();
            Path dense = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), tmp.resolve("dense"),
                    DType.F32);
            Path text = TinyCheckpoint.calibrationText(tmp.resolve("calib.txt"));
            Path out = tmp.resolve("carved");
            Carver.carve(dense, text, out, CarveOptions.of(SHARED, ACTIVE, EXPERTS).withCalibration(4, 32, 7)
                    .withBudgets(budgets), CarveListener.NONE);
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
