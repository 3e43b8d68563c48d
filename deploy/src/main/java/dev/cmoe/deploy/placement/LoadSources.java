package dev.cmoe.deploy.placement;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.cmoe.carve.CarveReport;
import dev.cmoe.experts.placement.ExpertLoads;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;

/**
 * Turns the {@code --loads} argument of {@code cmoe plan} into {@link ExpertLoads}: the carve
 * report next to the model, a saved report or metrics scrape, a live {@code /metrics} endpoint,
 * or uniform loads.
 */
public final class LoadSources {
    /** The default: {@code carve_report.json} in the model directory. */
    public static final String CARVE_REPORT = "carve-report";
    /** Every expert of a layer equally loaded. */
    public static final String UNIFORM = "uniform";

    private static final Duration HTTP_TIMEOUT = Duration.ofSeconds(10);

    private LoadSources() {
    }

    /**
     * Resolves {@code spec} for a model of {@code layers} × {@code experts} routed experts.
     *
     * @param spec {@value #CARVE_REPORT}, {@value #UNIFORM}, {@code http(s)://HOST:PORT/metrics}, or a file
     *             holding a carve report (JSON) or Prometheus text
     */
    public static ExpertLoads resolve(String spec, Path model, int layers, int experts) throws InterruptedException {
        ExpertLoads loads;
        if (spec.equals(CARVE_REPORT)) {
            Path file = model.resolve(CarveReport.FILE);
            if (!Files.isRegularFile(file)) {
                throw new IllegalArgumentException(model + " has no " + CarveReport.FILE
                        + "; pass --loads FILE, --loads http://HOST:PORT/metrics or --loads uniform");
            }
            loads = fromCarveReport(readReport(file), file.toString());
        } else if (spec.equals(UNIFORM)) {
            loads = ExpertLoads.uniform(layers, experts);
        } else if (spec.startsWith("http://") || spec.startsWith("https://")) {
            loads = fromPrometheus(scrape(spec), spec, experts);
        } else {
            loads = fromFile(Path.of(spec), experts);
        }
        return loads.requireShape(layers, experts);
    }

    /**
     * A saved carve report (JSON) or Prometheus text, told apart by the first character.
     *
     * @param experts routed experts per layer of the model, to which a scrape is padded
     */
    public static ExpertLoads fromFile(Path file, int experts) {
        if (!Files.isRegularFile(file)) {
            throw new IllegalArgumentException("--loads " + file + ": no such file (expected carve-report, uniform,"
                    + " a URL, or a file)");
        }
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + file + ": " + e.getMessage(), e);
        }
        if (text.stripLeading().startsWith("{")) {
            return fromCarveReport(parseReport(text, file.toString()), file.toString());
        }
        return fromPrometheus(text, file.toString(), experts);
    }

    /**
     * Counts scraped from Prometheus text. A counter exists only once its expert was chosen, so an
     * expert never chosen yet is missing: the counts are padded with zeros up to {@code experts}
     * (more experts than the model has still fail the shape check).
     */
    public static ExpertLoads fromPrometheus(String text, String source, int experts) {
        double[][] counts = PrometheusCounts.expertTokens(text, source);
        for (int l = 0; l < counts.length; l++) {
            if (counts[l].length < experts) {
                counts[l] = Arrays.copyOf(counts[l], experts);
            }
        }
        return ExpertLoads.ofCounts(source, counts);
    }

    /**
     * The loads a carve report measured with the final router bias ({@code loadsAfter}), which is
     * what the served model routes by.
     */
    public static ExpertLoads fromCarveReport(CarveReport report, String source) {
        List<CarveReport.Layer> layers = report.layers();
        if (layers == null || layers.isEmpty()) {
            throw new IllegalArgumentException(source + ": the carve report has no layers");
        }
        double[][] counts = new double[layers.size()][];
        for (CarveReport.Layer l : layers) {
            if (l.layer() < 0 || l.layer() >= counts.length || counts[l.layer()] != null) {
                throw new IllegalArgumentException(source + ": layer " + l.layer() + " is out of order or repeated");
            }
            long[] after = l.loadsAfter();
            if (after == null) {
                throw new IllegalArgumentException(source + ": layer " + l.layer() + " has no loadsAfter");
            }
            counts[l.layer()] = new double[after.length];
            for (int e = 0; e < after.length; e++) {
                counts[l.layer()][e] = after[e];
            }
        }
        return ExpertLoads.ofCounts(source + " (loadsAfter)", counts);
    }

    private static CarveReport readReport(Path file) {
        try {
            return parseReport(Files.readString(file, StandardCharsets.UTF_8), file.toString());
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    private static CarveReport parseReport(String json, String source) {
        try {
            JsonElement root = JsonParser.parseString(json);
            if (!(root instanceof JsonObject o) || !(o.get("layers") instanceof JsonArray)) {
                throw new IllegalArgumentException(source + " is not a carve report (no \"layers\" list)");
            }
            return CarveReport.fromJson(json);
        } catch (JsonParseException e) {
            throw new IllegalArgumentException(source + " is not a valid carve report: " + e.getMessage(), e);
        }
    }

    /** GETs a Prometheus endpoint as text. */
    static String scrape(String url) throws InterruptedException {
        URI uri;
        try {
            uri = URI.create(url);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--loads " + url + " is not a URL: " + e.getMessage(), e);
        }
        HttpClient client = HttpClient.newBuilder().connectTimeout(HTTP_TIMEOUT).build();
        HttpRequest request = HttpRequest.newBuilder(uri).timeout(HTTP_TIMEOUT)
                .header("Accept", "text/plain; version=0.0.4").GET().build();
        try {
            HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
            if (response.statusCode() != 200) {
                throw new IllegalArgumentException("GET " + url + " answered HTTP " + response.statusCode());
            }
            return response.body();
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot scrape " + url + ": " + e, e);
        } finally {
            client.close();
        }
    }
}
