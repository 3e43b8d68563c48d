package dev.cmoe.carve.report;

import dev.cmoe.carve.CarveReport;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The PNGs that go next to carve_report.json: one activation-rate histogram and one expert-load
 * chart per layer, so a reader sees at a glance how skewed the neurons are and how evenly the
 * routed experts share the calibration tokens before and after bias balancing.
 */
public final class CarvePlots {
    private CarvePlots() {
    }

    /** Writes {@code rates-layerN.png} and {@code loads-layerN.png} for every layer; returns the files. */
    public static List<Path> write(CarveReport report, Path dir) {
        List<Path> files = new ArrayList<>();
        for (CarveReport.Layer layer : report.layers()) {
            double[] rates = new double[layer.rates().length];
            for (int i = 0; i < rates.length; i++) {
                rates[i] = layer.rates()[i];
            }
            Path h = dir.resolve("rates-layer" + layer.layer() + ".png");
            Charts.histogram(h, "Layer " + layer.layer() + ": activation rates μ of " + rates.length
                    + " neurons (ATopK, K_a = " + report.options().kAct() + ")", "μ", rates, 50);
            files.add(h);
            List<String> experts = new ArrayList<>();
            for (int j = 0; j < layer.loadsBefore().length; j++) {
                experts.add(Integer.toString(j));
            }
            Map<String, double[]> loads = new LinkedHashMap<>();
            loads.put(String.format(java.util.Locale.ROOT, "b = 0 (imbalance %.2f)", layer.imbalanceBefore()),
                    toDouble(layer.loadsBefore()));
            if (report.options().balanceSteps() > 0) {
                loads.put(String.format(java.util.Locale.ROOT, "balanced (imbalance %.2f)", layer.imbalanceAfter()),
                        toDouble(layer.loadsAfter()));
            }
            Path b = dir.resolve("loads-layer" + layer.layer() + ".png");
            Charts.bars(b, "Layer " + layer.layer() + ": calibration tokens per routed expert", "expert",
                    "tokens", experts, loads);
            files.add(b);
        }
        return files;
    }

    private static double[] toDouble(long[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            d[i] = v[i];
        }
        return d;
    }
}
