package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import dev.cmoe.carve.CarveOptions.Method;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.testing.RandomModel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every way a carve request can be wrong fails up front, naming the value. */
class CarveOptionsTest {
    @TempDir
    Path tmp;

    static void fails(String message, Supplier<?> action) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, action::get);
        assertTrue(e.getMessage().contains(message), "'" + e.getMessage() + "' should contain '" + message + "'");
    }

    static CarveOptions opts(int shared, int active, int experts, int kAct, int samples, int seqlen, int steps,
                             double gamma) {
        return new CarveOptions(shared, active, experts, kAct, samples, seqlen, 0, steps, gamma, 0, Method.CMOE,
                CarveOptions.Budgets.METHOD, false);
    }

    @Test
    void defaultsAreThePapers() {
        CarveOptions o = CarveOptions.of(2, 2, 8);
        assertEquals(10, o.kAct());
        assertEquals(8, o.calibSamples());
        assertEquals(1e-3, o.balanceGamma());
        assertEquals(6, o.routed());
        assertEquals(128, o.seqlen(RandomModel.llamaConfig())); // min(512, context 128)
        assertEquals(64, o.withCalibration(8, 64, 0).seqlen(RandomModel.llamaConfig()));
    }

    @Test
    void optionsAloneAreChecked() {
        fails("shared experts must not be negative, got -1", () -> opts(-1, 2, 8, 10, 8, 0, 0, 1e-3));
        fails("at least one routed expert must be active, got 0", () -> opts(2, 0, 8, 10, 8, 0, 0, 1e-3));
        fails("shared + active = 3 + 6 exceeds the 8 experts", () -> opts(3, 6, 8, 10, 8, 0, 0, 1e-3));
        fails("kAct (K_a) must be at least 1, got 0", () -> opts(2, 2, 8, 0, 8, 0, 0, 1e-3));
        fails("calibration samples must be at least 1, got 0", () -> opts(2, 2, 8, 10, 0, 0, 0, 1e-3));
        fails("calibration seqlen must be positive (or 0 for the default), got -5",
                () -> opts(2, 2, 8, 10, 8, -5, 0, 1e-3));
        fails("balance steps must not be negative, got -1", () -> opts(2, 2, 8, 10, 8, 0, -1, 1e-3));
        fails("balance gamma must be positive and finite, got 0.0", () -> opts(2, 2, 8, 10, 8, 0, 10, 0));
        fails("balance gamma must be positive and finite, got NaN", () -> opts(2, 2, 8, 10, 8, 0, 10, Double.NaN));
        fails("balance samples must not be negative, got -2",
                () -> CarveOptions.of(2, 2, 8).withBalance(10, 1e-3).withBalanceSamples(-2));
        assertThrows(NullPointerException.class,
                () -> new CarveOptions(2, 2, 8, 10, 8, 0, 0, 0, 1e-3, 0, null, CarveOptions.Budgets.METHOD, false));
    }

    @Test
    void optionsAreCheckedAgainstTheModel() {
        ModelConfig c = RandomModel.llamaConfig(); // intermediate 96, context 128
        fails("7 experts do not divide the intermediate size 96 (remainder 5)",
                () -> { CarveOptions.of(2, 2, 7).validate(c); return null; });
        fails("kAct (K_a) 97 exceeds the intermediate size 96",
                () -> { CarveOptions.of(2, 2, 8).withKAct(97).validate(c); return null; });
        fails("calibration seqlen 256 exceeds the model's context of 128",
                () -> { CarveOptions.of(2, 2, 8).withCalibration(8, 256, 0).validate(c); return null; });
        JsonObject raw = c.rawCopy();
        JsonObject block = new JsonObject();
        block.addProperty("experts", 8);
        block.addProperty("shared", 2);
        block.addProperty("active", 2);
        block.addProperty("expert_size", 12);
        block.addProperty("router", "analytical");
        block.addProperty("method", "cmoe");
        raw.add("cmoe", block);
        ModelConfig carved = ModelConfig.parse(raw.toString(), "carved");
        fails("already carved", () -> { CarveOptions.of(2, 2, 8).validate(carved); return null; });
    }

    @Test
    void carverChecksItsInputsBeforeWorking() throws Exception {
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 1, 1);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        CarveOptions ok = Fixtures.options(2, 2, 8);
        fails("calibration text " + tmp.resolve("none.txt") + " does not exist",
                () -> Carver.carve(dense, tmp.resolve("none.txt"), tmp.resolve("o1"), ok, CarveListener.NONE));
        Path tiny = Files.writeString(tmp.resolve("tiny.txt"), "The jury", StandardCharsets.UTF_8);
        fails("fewer than one window of 32",
                () -> Carver.carve(dense, tiny, tmp.resolve("o2"), ok, CarveListener.NONE));
        Files.createDirectories(tmp.resolve("exists"));
        fails("output directory " + tmp.resolve("exists") + " already exists",
                () -> Carver.carve(dense, text, tmp.resolve("exists"), ok, CarveListener.NONE));
        fails("5 experts do not divide the intermediate size 96 (remainder 1)",
                () -> Carver.carve(dense, text, tmp.resolve("o3"), Fixtures.options(1, 1, 5), CarveListener.NONE));
        assertTrue(Files.notExists(tmp.resolve("o1")) && Files.notExists(tmp.resolve("o2")));
    }
}
