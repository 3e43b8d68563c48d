package dev.cmoe.experts.placement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.experts.ExpertId;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PlacementPlanTest {
    private static PlacementPlan twoByTwo() {
        return new PlacementPlan(1, 1, 2,
                List.of(new PlacementPlan.Device("w1/cpu", 0), new PlacementPlan.Device("w2/gpu:0", 1 << 20)),
                List.of(new PlacementPlan.Assignment(0, 0, List.of("w1/cpu", "w2/gpu:0"), 0.7),
                        new PlacementPlan.Assignment(0, 1, List.of("w2/gpu:0"), 0.3)));
    }

    @Test
    void roundTripsThroughAFile(@TempDir Path dir) {
        PlacementPlan plan = twoByTwo();
        Path file = dir.resolve("plan.json");
        plan.write(file);
        PlacementPlan back = PlacementPlan.read(file);
        assertEquals(plan, back);
        assertEquals(List.of("w1/cpu", "w2/gpu:0"), back.devicesFor(new ExpertId(0, 0)));
        assertEquals(List.of(new ExpertId(0, 0), new ExpertId(0, 1)), back.byDevice().get("w2/gpu:0"));
    }

    @Test
    void namesWhatIsWrong() {
        String missing = twoByTwo().toJson().replace("\"expert\": 1", "\"expert\": 0");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> PlacementPlan.fromJson(missing)).getMessage()
                .contains("(0, 0) is assigned twice"));
        String unknown = twoByTwo().toJson().replace("\"devices\": [\n        \"w2/gpu:0\"", "\"devices\": [\n        \"w3/cpu\"");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> PlacementPlan.fromJson(unknown)).getMessage()
                .contains("unknown device w3/cpu"), unknown);
        String badId = twoByTwo().toJson().replace("\"id\": \"w1/cpu\"", "\"id\": \"w1\"");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> PlacementPlan.fromJson(badId)).getMessage()
                .contains("not WORKER/DEVICE"));
        assertThrows(IllegalArgumentException.class, () -> PlacementPlan.fromJson("{\"version\": 1"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> PlacementPlan.fromJson(
                "{\"version\":1,\"layers\":1,\"experts\":2,\"devices\":[{\"id\":\"a/cpu\"}],\"assignments\":"
                        + "[{\"layer\":0,\"expert\":0,\"devices\":[\"a/cpu\"]}]}")).getMessage()
                .contains("(0, 1) has no assignment"));
    }

    @Test
    void writeLeavesNoTemporaryFiles(@TempDir Path dir) throws Exception {
        twoByTwo().write(dir.resolve("p.json"));
        twoByTwo().write(dir.resolve("p.json"));
        try (var files = Files.list(dir)) {
            assertEquals(List.of(dir.resolve("p.json")), files.toList());
        }
    }
}
