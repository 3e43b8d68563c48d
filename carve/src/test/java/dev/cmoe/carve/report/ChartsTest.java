package dev.cmoe.carve.report;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ChartsTest {
    @TempDir
    Path tmp;

    @Test
    void writesReadablePngsAndNoTempFiles() throws Exception {
        Charts.histogram(tmp.resolve("h.png"), "rates", "μ", new double[] {0.1, 0.2, 0.2, 0.9}, 10);
        Map<String, double[]> loads = new LinkedHashMap<>();
        loads.put("before", new double[] {5, 1, 1});
        loads.put("after", new double[] {3, 2, 2});
        Charts.bars(tmp.resolve("b.png"), "loads", "expert", "tokens", List.of("0", "1", "2"), loads);
        Charts.lines(tmp.resolve("l.png"), "loss", "step", "loss", new double[] {1, 2, 3},
                Map.of("train", new double[] {3, 2, 1}));
        Charts.linesTwoAxes(tmp.resolve("t.png"), "loss and imbalance", "step", new double[] {1, 2, 3}, "loss",
                Map.of("train", new double[] {3, 2, 1}), "imbalance", Map.of("layer 0", new double[] {1.3, 1.1, 1.05}));
        for (String f : new String[] {"h.png", "b.png", "l.png", "t.png"}) {
            BufferedImage img = ImageIO.read(tmp.resolve(f).toFile());
            assertEquals(900, img.getWidth(), f);
            assertEquals(500, img.getHeight(), f);
        }
        try (var files = Files.list(tmp)) {
            assertArrayEquals(new String[] {"b.png", "h.png", "l.png", "t.png"},
                    files.map(p -> p.getFileName().toString()).sorted().toArray());
        }
    }

    @Test
    void mismatchedSeriesIsAnError() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Charts.bars(
                tmp.resolve("x.png"), "t", "x", "y", List.of("a", "b"), Map.of("s", new double[] {1})));
        assertTrue(e.getMessage().contains("series s has 1 values for 2 categories"), e.getMessage());
    }
}
