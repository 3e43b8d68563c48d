package dev.cmoe.carve.report;

import java.awt.BasicStroke;
import java.awt.Color;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Map;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.NumberAxis;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.xy.XYLineAndShapeRenderer;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.data.category.DefaultCategoryDataset;
import org.jfree.data.statistics.HistogramDataset;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/**
 * PNG charts for reports (activation rates, expert loads, training curves), drawn headless with
 * JFreeChart and written atomically like every other output.
 */
public final class Charts {
    private static final int WIDTH = 900;
    private static final int HEIGHT = 500;

    static {
        System.setProperty("java.awt.headless", "true");
    }

    private Charts() {
    }

    /** A histogram of {@code values} in {@code bins} equal-width bins. */
    public static void histogram(Path png, String title, String xLabel, double[] values, int bins) {
        HistogramDataset data = new HistogramDataset();
        data.addSeries(title, values, bins);
        JFreeChart chart = ChartFactory.createHistogram(title, xLabel, "count", data, PlotOrientation.VERTICAL,
                false, false, false);
        write(png, chart);
    }

    /** Grouped bars: one group per category, one bar per series (e.g. loads before / after balancing). */
    public static void bars(Path png, String title, String xLabel, String yLabel, List<String> categories,
                            Map<String, double[]> series) {
        DefaultCategoryDataset data = new DefaultCategoryDataset();
        series.forEach((name, values) -> {
            if (values.length != categories.size()) {
                throw new IllegalArgumentException("series " + name + " has " + values.length + " values for "
                        + categories.size() + " categories");
            }
            for (int i = 0; i < values.length; i++) {
                data.addValue(values[i], name, categories.get(i));
            }
        });
        JFreeChart chart = ChartFactory.createBarChart(title, xLabel, yLabel, data, PlotOrientation.VERTICAL,
                series.size() > 1, false, false);
        write(png, chart);
    }

    /** Lines over a shared x axis, e.g. loss and imbalance per step. */
    public static void lines(Path png, String title, String xLabel, String yLabel, double[] x,
                             Map<String, double[]> series) {
        JFreeChart chart = ChartFactory.createXYLineChart(title, xLabel, yLabel, series(x, series), PlotOrientation.VERTICAL,
                series.size() > 1, false, false);
        write(png, chart);
    }

    /**
     * Lines over a shared x axis against two y axes: {@code left} on the left scale, {@code right}
     * on its own scale at the right (e.g. training loss and expert-load imbalance per step).
     */
    public static void linesTwoAxes(Path png, String title, String xLabel, double[] x, String leftLabel,
                                    Map<String, double[]> left, String rightLabel, Map<String, double[]> right) {
        JFreeChart chart = ChartFactory.createXYLineChart(title, xLabel, leftLabel, series(x, left),
                PlotOrientation.VERTICAL, true, false, false);
        XYPlot plot = chart.getXYPlot();
        plot.setBackgroundPaint(Color.WHITE);
        plot.setDomainGridlinePaint(Color.LIGHT_GRAY);
        plot.setRangeGridlinePaint(Color.LIGHT_GRAY);
        // the left series stand out (thick, dark); the right ones are dashed in the palette's colours
        XYLineAndShapeRenderer main = new XYLineAndShapeRenderer(true, false);
        Color[] dark = {Color.BLACK, Color.DARK_GRAY, Color.GRAY};
        for (int i = 0; i < left.size(); i++) {
            main.setSeriesPaint(i, dark[i % dark.length]);
            main.setSeriesStroke(i, new BasicStroke(2.5f));
        }
        plot.setRenderer(0, main);
        NumberAxis axis = new NumberAxis(rightLabel);
        axis.setAutoRangeIncludesZero(false);
        ((NumberAxis) plot.getRangeAxis()).setAutoRangeIncludesZero(false);
        plot.setRangeAxis(1, axis);
        plot.setDataset(1, series(x, right));
        plot.mapDatasetToRangeAxis(1, 1);
        XYLineAndShapeRenderer renderer = new XYLineAndShapeRenderer(true, false);
        renderer.setDefaultStroke(new BasicStroke(1f, BasicStroke.CAP_ROUND, BasicStroke.JOIN_ROUND, 1f,
                new float[] {4f, 3f}, 0f));
        renderer.setAutoPopulateSeriesStroke(false);
        plot.setRenderer(1, renderer);
        write(png, chart);
    }

    private static XYSeriesCollection series(double[] x, Map<String, double[]> series) {
        XYSeriesCollection data = new XYSeriesCollection();
        series.forEach((name, ys) -> {
            XYSeries s = new XYSeries(name);
            for (int i = 0; i < Math.min(x.length, ys.length); i++) {
                s.add(x[i], ys[i]);
            }
            data.addSeries(s);
        });
        return data;
    }

    private static void write(Path png, JFreeChart chart) {
        chart.setBackgroundPaint(Color.WHITE);
        Path tmp = png.resolveSibling("." + png.getFileName() + ".tmp");
        try {
            ChartUtils.saveChartAsPNG(tmp.toFile(), chart, WIDTH, HEIGHT);
            Files.move(tmp, png, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException ignored) {
                // the temp file is named as ours; leaving it is harmless
            }
            throw new UncheckedIOException("cannot write chart " + png + ": " + e.getMessage(), e);
        }
    }
}
