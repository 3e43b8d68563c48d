package dev.cmoe.carve.adapt;

import dev.cmoe.carve.report.Charts;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The PNG that goes next to an adapted model: training loss and every layer's expert-load
 * imbalance over the steps, so a reader sees whether the loss fell and whether the bias rule
 * kept the experts evenly loaded.
 */
final class AdaptPlots {
    /** File name inside the adapted model directory. */
    static final String FILE = "adapt-curves.png";

    private AdaptPlots() {
    }

    /** Writes {@value #FILE} into {@code dir} and returns it. */
    static Path write(AdaptReport report, Path dir) {
        List<AdaptReport.Entry> h = report.history();
        double[] x = new double[h.size()];
        double[] loss = new double[h.size()];
        int layers = report.layers().size();
        double[][] imbalance = new double[layers][h.size()];
        for (int i = 0; i < h.size(); i++) {
            x[i] = h.get(i).step();
            loss[i] = h.get(i).loss();
            for (int l = 0; l < layers; l++) {
                imbalance[l][i] = h.get(i).imbalance()[l];
            }
        }
        Map<String, double[]> left = new LinkedHashMap<>();
        left.put("training loss", loss);
        Map<String, double[]> right = new LinkedHashMap<>();
        for (int l = 0; l < layers; l++) {
            right.put("imbalance, layer " + l, imbalance[l]);
        }
        Path png = dir.resolve(FILE);
        String title = String.format(Locale.ROOT, "Adaptation: training loss (black, left) and max/mean expert load"
                + " per layer (dashed, right), %d steps", report.steps());
        Charts.linesTwoAxes(png, title, "step", x, "loss", left, "load imbalance", right);
        return png;
    }
}
