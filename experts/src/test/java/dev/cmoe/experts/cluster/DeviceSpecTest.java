package dev.cmoe.experts.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.engine.Engine;
import dev.cmoe.model.EngineNatives;
import java.util.List;
import org.junit.jupiter.api.Test;

/** {@code --devices} names devices the engine has, and says how to get GPUs when it has none. */
class DeviceSpecTest {
    @Test
    void theCpuIsAlwaysThereAndUnlimitedUnlessBudgeted() {
        List<DeviceSpec> d = DeviceSpec.parse(" CPU ");
        assertEquals(1, d.size());
        assertEquals("cpu", d.get(0).name());
        assertEquals(Device.cpu(), d.get(0).device());
        assertEquals("w1/cpu", d.get(0).id("w1"));
        assertEquals(0, d.get(0).memoryBudget(0));
        assertEquals(1 << 20, d.get(0).memoryBudget(1 << 20));
    }

    @Test
    void cudaIsAnAliasOfGpuSoTheSameDeviceCannotBeListedTwice() {
        IllegalArgumentException twice = assertThrows(IllegalArgumentException.class,
                () -> DeviceSpec.parse("gpu:0,cuda:0"));
        assertTrue(twice.getMessage().contains("lists gpu:0 twice"), twice.getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> DeviceSpec.parse("gpu:0,gpu:00")).getMessage()
                .contains("lists gpu:0 twice"), "one GPU, however it is written");
    }

    @Test
    void aGpuTheEngineDoesNotSeeIsRefusedAtStart() {
        int gpus = Engine.getInstance().getGpuCount();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DeviceSpec.parse("cuda:" + gpus));
        assertTrue(e.getMessage().contains("asks for gpu:" + gpus + " but the engine"), e.getMessage());
        if (gpus == 0) {
            assertTrue(e.getMessage().contains(EngineNatives.ENV), e.getMessage()); // how to get a CUDA engine
        }
        assertTrue(assertThrows(IllegalArgumentException.class, () -> DeviceSpec.parse("tpu:0")).getMessage()
                .contains("neither cpu nor gpu:N (cuda:N)"));
    }
}
