package dev.cmoe.carve;

import dev.cmoe.carve.Carver.Recipe;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.eval.Perplexity;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Not a test: the probe behind carve/README.md's "why per-layer budgets work". It carves S3A3E8
 * with `ours` at N_k in every layer (calibration seed 0, 16 windows), then scores the first 60
 * windows of the test split with one layer at a time given N_k − 1 and N_k + 1, and with a few
 * allocations set by hand. Run by hand:
 *
 * <pre>
 * ./mvnw -o -pl carve test -Dtest=BudgetProbeExperiment -Dsurefire.failIfNoSpecifiedTests=false \
 *     -Dcmoe.probe.model=$PWD/models/brown-llama -Dcmoe.probe.data=$HOME/.cache/cmoe/data
 * </pre>
 */
@EnabledIfSystemProperty(named = "cmoe.probe.model", matches = ".+")
class BudgetProbeExperiment {
    private static final int SEQLEN = 256;
    private static final int WINDOWS = 60;
    private static final int[][] BY_HAND = {{4, 3, 2, 3, 3, 3}, {5, 3, 2, 2, 3, 3}, {5, 4, 2, 2, 2, 3},
        {5, 5, 2, 2, 2, 2}, {4, 4, 2, 3, 3, 2}, {5, 3, 3, 2, 2, 3}, {4, 3, 3, 3, 3, 2}, {4, 3, 3, 2, 3, 3}};

    @Test
    void probe() throws Exception {
        Path model = Path.of(System.getProperty("cmoe.probe.model"));
        Path data = Path.of(System.getProperty("cmoe.probe.data",
                System.getProperty("user.home") + "/.cache/cmoe/data"));
        Path calib = data.resolve("train.txt");
        int[] scored;
        int[] calibTokens;
        try (ModelDir d = ModelDir.open(model)) {
            calibTokens = d.tokenizer().encodeIds(Files.readString(calib, StandardCharsets.UTF_8), false);
            int[] all = d.tokenizer().encodeIds(Files.readString(data.resolve("test.txt"), StandardCharsets.UTF_8),
                    false);
            scored = Arrays.copyOf(all, Math.min(all.length, WINDOWS * SEQLEN));
        }
        CarveOptions opts = CarveOptions.of(3, 3, 8).withCalibration(16, SEQLEN, 0);
        int[][] calibration = Calibration.windows(calibTokens, opts.drawnSamples(), SEQLEN, 0);
        Recipe uniform = Recipe.of(CarveOptions.Method.OURS).withBudget(Carver.Budget.UNIFORM);
        try (CarvedModel c = Carver.carveInMemory(model, calib, opts, uniform, CarveListener.NONE,
                (tok, len) -> calibration)) {
            LlamaModel m = c.model();
            int layers = m.config().numLayers();
            double base = Perplexity.evaluate(m, scored, SEQLEN, 8, w -> { }).perplexity();
            System.out.printf(Locale.ROOT, "N_k = %d in every layer: %.3f%n", c.moe().active(), base);
            for (int l = 0; l < layers; l++) {
                for (int delta : new int[] {-1, 1}) {
                    int[] k = new int[layers];
                    Arrays.fill(k, c.moe().active());
                    k[l] += delta;
                    double p = score(c, k, scored);
                    System.out.printf(Locale.ROOT, "layer %d at %d: %.3f (%+.3f)%n", l, k[l], p, p - base);
                }
            }
            for (int[] k : BY_HAND) {
                double p = score(c, k, scored);
                System.out.printf(Locale.ROOT, "budgets %s: %.3f (%+.3f)%n", Arrays.toString(k), p, p - base);
            }
        }
    }

    /**
     * Test-split perplexity of {@code c} with layer l selecting {@code k[l]} routed experts: each
     * layer is loaded again from the carved tensors with that N_k, and the originals are put back.
     */
    private static double score(CarvedModel c, int[] k, int[] scored) {
        LlamaModel m = c.model();
        MoeConfig moe = c.moe();
        FeedForward[] originals = new FeedForward[k.length];
        try {
            for (int l = 0; l < k.length; l++) {
                MoeConfig layer = new MoeConfig(moe.experts(), moe.shared(), k[l], moe.expertSize(), moe.router(),
                        moe.method(), moe.details());
                originals[l] = m.replaceFeedForward(l, MoeFeedForward.load(m.layerManager(l), c.layerTensors(l), l,
                        m.config(), layer, true, m.kernels()));
            }
            return Perplexity.evaluate(m, scored, SEQLEN, 8, w -> { }).perplexity();
        } finally {
            for (int l = 0; l < k.length; l++) {
                if (originals[l] != null) {
                    m.replaceFeedForward(l, originals[l]).close();
                }
            }
        }
    }
}
