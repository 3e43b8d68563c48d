package dev.cmoe.carve;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * What a carving did and measured, layer by layer: written as carve_report.json next to the
 * model, and read by plot writers (rates μ per layer, expert loads) and by people judging a carve.
 *
 * @param model the dense input directory
 * @param output the carved output directory
 * @param options what was asked for
 * @param expertSize m, neurons per expert
 * @param calibrationTokens tokens the layers were calibrated on (samples × seqlen)
 * @param seqlen calibration window length used
 * @param layers per decoder layer, in order
 * @param seconds whole-run timings
 */
public record CarveReport(String model, String output, CarveOptions options, int expertSize, int calibrationTokens,
                          int seqlen, List<Layer> layers, Timings seconds) {

    /** File name inside the carved model directory. */
    public static final String FILE = "carve_report.json";

    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping()
            .serializeSpecialFloatingPointValues().create();

    public CarveReport {
        layers = List.copyOf(layers);
    }

    /** This report once written to {@code out}, its writing having taken {@code saveSeconds}. */
    CarveReport saved(java.nio.file.Path out, double saveSeconds) {
        Timings t = seconds;
        return new CarveReport(model, out.toString(), options, expertSize, calibrationTokens, seqlen, layers,
                new Timings(t.load(), t.calibrationText(), t.carve(), saveSeconds, t.total() + saveSeconds));
    }

    /**
     * One layer.
     *
     * @param rates μ of every intermediate neuron (intermediate)
     * @param rateStats summary of {@code rates}
     * @param sharedSize N_s·m, neurons in the shared expert
     * @param sharedNeurons the shared expert's neurons, ascending (N_s·m)
     * @param sharedRates μ of those neurons, in the same order
     * @param expertSizes neurons of each routed expert (all m: clusters are balanced)
     * @param experts the neurons of each routed expert, ascending (N_r × m)
     * @param representatives the neuron whose rows the router uses, per routed expert
     * @param clusterPasses balanced-assignment passes run, and {@code converged} whether the last changed nothing
     * @param loadsBefore tokens routed to each expert on the calibration tokens, b = 0
     * @param loadsAfter the same after balancing (equal to before without balancing)
     * @param imbalanceBefore max load / mean load with b = 0
     * @param imbalanceAfter the same after balancing
     * @param bias the final b
     * @param active routed experts the layer selects per token (its budget)
     * @param budgetErrors with per-layer budgets, the layer's error for 0 … N_r routed experts per
     *     token on its calibration tokens ({@code LayerBudgets}); null for a uniform budget
     * @param seconds timings of the layer's phases
     */
    public record Layer(int layer, float[] rates, RateStats rateStats, int sharedSize, int[] sharedNeurons, float[] sharedRates,
                        int[] expertSizes, int[][] experts, int[] representatives, int clusterPasses,
                        boolean converged, long[] loadsBefore, long[] loadsAfter, double imbalanceBefore,
                        double imbalanceAfter, float[] bias, int active, double[] budgetErrors, LayerTimings seconds) {
        /**
         * This layer with budget {@code k} and the balance made for it, which took
         * {@code balancing} seconds more, after {@code passing} seconds of passes through the model.
         */
        Layer rebalanced(int k, LoadBalancer.Result balanced, double balancing, double passing) {
            LayerTimings t = this.seconds;
            return new Layer(layer, rates, rateStats, sharedSize, sharedNeurons, sharedRates, expertSizes, experts,
                    representatives, clusterPasses, converged, balanced.loadsBefore(), balanced.loadsAfter(),
                    balanced.imbalanceBefore(), balanced.imbalanceAfter(), balanced.bias(), k, budgetErrors,
                    new LayerTimings(t.capture(), t.markers(), t.cluster(), t.router(), t.balance() + balancing,
                            t.total() + balancing + passing));
        }
    }

    /** min, mean, max and percentiles of μ over a layer's neurons. */
    public record RateStats(double min, double mean, double max, double p10, double p25, double p50, double p75,
                            double p90, double p99) {
        static RateStats of(float[] rates) {
            double[] s = new double[rates.length];
            double sum = 0;
            for (int i = 0; i < rates.length; i++) {
                s[i] = rates[i];
                sum += rates[i];
            }
            Arrays.sort(s);
            return new RateStats(s[0], sum / s.length, s[s.length - 1], pct(s, 10), pct(s, 25), pct(s, 50),
                    pct(s, 75), pct(s, 90), pct(s, 99));
        }

        /** Linear interpolation between closest ranks (numpy's default). */
        private static double pct(double[] sorted, double p) {
            double pos = p / 100 * (sorted.length - 1);
            int lo = (int) Math.floor(pos);
            int hi = Math.min(lo + 1, sorted.length - 1);
            return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
        }
    }

    /** Seconds per phase of one layer. */
    public record LayerTimings(double capture, double markers, double cluster, double router, double balance,
                               double total) {
    }

    /** Seconds per phase of the run. */
    public record Timings(double load, double calibrationText, double carve, double save, double total) {
    }

    public String toJson() {
        return GSON.toJson(this);
    }

    public static CarveReport fromJson(String json) {
        return GSON.fromJson(json, CarveReport.class);
    }

    /** Reads {@code dir/carve_report.json}. */
    public static CarveReport read(Path dir) {
        try {
            return fromJson(Files.readString(dir.resolve(FILE), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + dir.resolve(FILE) + ": " + e.getMessage(), e);
        }
    }
}
