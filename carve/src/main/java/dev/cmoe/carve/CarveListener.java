package dev.cmoe.carve;

import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * Hears how a carving progresses, so a command line can draw bars and a test can stay silent.
 * Every method has a no-op default; calls come from the carving thread, in order.
 */
public interface CarveListener {
    /** Hears nothing. */
    CarveListener NONE = new CarveListener() { };

    /**
     * Layer {@code layer} of {@code layers} begins; {@code work} units of progress follow:
     * calibration windows captured, tokens scored, one for clustering, one for the router, and
     * the balancing steps.
     */
    default void layerStarted(int layer, int layers, long work) {
    }

    /**
     * Layer {@code layer} is balanced again on the stream the per-layer budgets make
     * ({@link #layerFinished} follows); {@code work} units of progress follow.
     */
    default void rebalanceStarted(int layer, int layers, long work) {
    }

    /** {@code done} of the layer's work units are complete; {@code phase} names the current one. */
    default void progress(long done, String phase) {
    }

    default void layerFinished(CarveReport.Layer layer) {
    }

    default void finished(CarveReport report) {
    }

    /** One progress bar per layer on stderr. */
    static CarveListener progressBars() {
        return new CarveListener() {
            private ProgressBar bar;

            @Override
            public void layerStarted(int layer, int layers, long work) {
                start("carve layer " + (layer + 1) + "/" + layers, work);
            }

            @Override
            public void rebalanceStarted(int layer, int layers, long work) {
                start("balance again, layer " + (layer + 1) + "/" + layers, work);
            }

            private void start(String task, long work) {
                bar = new ProgressBarBuilder()
                        .setTaskName(task)
                        .setInitialMax(work)
                        .setStyle(ProgressBarStyle.ASCII)
                        .setConsumer(new ConsoleProgressBarConsumer(System.err))
                        .build();
            }

            @Override
            public void progress(long done, String phase) {
                bar.stepTo(done);
                bar.setExtraMessage(phase);
            }

            @Override
            public void layerFinished(CarveReport.Layer layer) {
                bar.setExtraMessage(String.format(java.util.Locale.ROOT, "imbalance %.2f -> %.2f",
                        layer.imbalanceBefore(), layer.imbalanceAfter()));
                bar.close();
            }
        };
    }
}
