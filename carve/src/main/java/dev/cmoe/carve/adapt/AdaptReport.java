package dev.cmoe.carve.adapt;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.carve.CarveReport;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * What an adaptation did and measured: the history of the training loss, of every layer's expert
 * load imbalance and of the router scales u, and the validation loss and loads before and after.
 * Written as the {@value #KEY} block of the adapted model's carve_report.json (beside the
 * carving's own report), and drawn by {@code AdaptPlots}.
 *
 * @param model the carved input directory
 * @param output the adapted output directory
 * @param options what was asked for
 * @param seqLen the window length used (the asked one clamped to the model's context)
 * @param steps steps done so far
 * @param totalSteps steps of the whole run
 * @param tokens training tokens seen so far
 * @param seconds time spent in training steps so far, over every session of a resumed run (validation
 *     and saving not included)
 * @param tokensPerSecond tokens / seconds: the training throughput
 * @param before validation before the first step (null without validation windows)
 * @param after validation at the end (null until finished, or without validation windows)
 * @param history one entry per {@code options.logEvery()} steps
 * @param layers the final u and b of every layer
 */
public record AdaptReport(String model, String output, AdaptOptions options, int seqLen, int steps, int totalSteps,
                          long tokens, double seconds, double tokensPerSecond, Eval before, Eval after,
                          List<Entry> history, List<Layer> layers) {

    /** The key of the block in carve_report.json. */
    public static final String KEY = "adaptation";

    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping()
            .serializeSpecialFloatingPointValues().create();

    public AdaptReport {
        history = List.copyOf(history);
        layers = List.copyOf(layers);
    }

    /**
     * Loss and routing on the validation windows.
     *
     * @param loads (layers, N_r) tokens routed to each expert
     * @param imbalance per layer, max load / mean load
     */
    public record Eval(int step, int windows, double loss, double perplexity, long[][] loads, double[] imbalance) {
    }

    /**
     * One point of the history: means over the steps since the previous point.
     *
     * @param loss mean training loss of the applied steps among those (0 if every one was skipped)
     * @param lr the LoRA learning rate at the point
     * @param imbalance per layer, max / mean of the tokens routed to each expert over those steps
     * @param scale per layer, statistics of u at the point
     * @param skipped steps among those whose loss or gradient was not finite, so changed nothing
     */
    public record Entry(int step, int epoch, long tokens, double loss, double lr, double[] imbalance,
                        ScaleStats[] scale, int skipped) {
    }

    /** mean, mean |u|, min and max of one layer's router scales. */
    public record ScaleStats(double mean, double meanAbs, double min, double max) {
        static ScaleStats of(float[] u) {
            double sum = 0;
            double abs = 0;
            double min = Double.POSITIVE_INFINITY;
            double max = Double.NEGATIVE_INFINITY;
            for (float v : u) {
                sum += v;
                abs += Math.abs(v);
                min = Math.min(min, v);
                max = Math.max(max, v);
            }
            return new ScaleStats(sum / u.length, abs / u.length, min, max);
        }
    }

    /** A layer's final router scales u and bias b. */
    public record Layer(int layer, float[] scale, float[] bias) {
    }

    /** Whether every step has run. */
    public boolean finished() {
        return steps == totalSteps;
    }

    public String toJson() {
        return GSON.toJson(this);
    }

    static JsonElement toTree(Object o) {
        return GSON.toJsonTree(o);
    }

    static <T> T fromTree(JsonElement e, Class<T> type) {
        return GSON.fromJson(e, type);
    }

    static String pretty(JsonElement e) {
        return GSON.toJson(e);
    }

    /** Reads the {@value #KEY} block of {@code dir/carve_report.json}. */
    public static AdaptReport read(Path dir) {
        Path file = dir.resolve(CarveReport.FILE);
        try {
            JsonObject o = JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8)).getAsJsonObject();
            if (!o.has(KEY)) {
                throw new IllegalArgumentException(file + " has no '" + KEY + "' block: the model was not adapted");
            }
            return GSON.fromJson(o.get(KEY), AdaptReport.class);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }
}
