package dev.cmoe.carve;

import dev.cmoe.carve.Carver.Grouping;
import dev.cmoe.carve.Carver.Recipe;
import dev.cmoe.carve.NeuronScores.Importance;
import dev.cmoe.carve.RouterFit.Kind;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.eval.Perplexity;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.moe.BiasRule;
import dev.cmoe.model.moe.MoeFeedForward;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Not a test: the side-by-side measurement of carving methods behind the README tables. Every
 * variant is carved once per calibration seed at every shape, and scored on the first windows of
 * two held-out texts (the corpus test split and a text of another domain), with each layer's
 * expert-load imbalance (max/mean tokens per expert) counted while scoring. Run by hand:
 *
 * <pre>
 * ./mvnw -o -pl carve test -Dtest=CompareExperiment -Dsurefire.failIfNoSpecifiedTests=false \
 *     -Dcmoe.compare.model=$PWD/models/brown-llama -Dcmoe.compare.data=$HOME/.cache/cmoe/data \
 *     [-Dcmoe.compare.heldout=$HOME/.cache/cmoe/data/fortunes.txt] [-Dcmoe.compare.shapes=S3A3E8,S2A6E16,S2A2E16]
 *     [-Dcmoe.compare.seeds=0,1,2] [-Dcmoe.compare.windows=60] [-Dcmoe.compare.variants=cmoe,fitted,ours]
 * </pre>
 */
@EnabledIfSystemProperty(named = "cmoe.compare.model", matches = ".+")
class CompareExperiment {
    /** One way of carving: a recipe plus the options it changes from the defaults (0 = default). */
    record Variant(String name, Recipe recipe, int kAct, int samples, int balanceSteps, double gamma,
                   int balanceSamples) {
        Variant(String name, Recipe recipe) {
            this(name, recipe, 0, 0, 0, CarveOptions.DEFAULT_GAMMA, 0);
        }

        Variant withKAct(int k) {
            return new Variant(name, recipe, k, samples, balanceSteps, gamma, balanceSamples);
        }

        Variant withSamples(int s) {
            return new Variant(name, recipe, kAct, s, balanceSteps, gamma, balanceSamples);
        }

        Variant withBalance(int steps, double g) {
            return new Variant(name, recipe, kAct, samples, steps, g, balanceSamples);
        }

        Variant withBalanceSamples(int s) {
            return new Variant(name, recipe, kAct, samples, balanceSteps, gamma, s);
        }
    }

    static final int SEQLEN = 256;
    static final Map<String, Variant> VARIANTS = new LinkedHashMap<>();

    static {
        Recipe cmoe = Recipe.of(CarveOptions.Method.CMOE);
        Recipe fitted = Recipe.of(CarveOptions.Method.FITTED);
        Recipe ours = Recipe.of(CarveOptions.Method.OURS);
        // the variants measured before per-layer budgets keep N_k in every layer, so that their
        // rows in carve/README.md reproduce
        Recipe oursUniform = ours.withBudget(Carver.Budget.UNIFORM);
        put("cmoe", new Variant("cmoe (reference)", cmoe));
        put("fitted", new Variant("fitted router (the previous ours)", fitted));
        put("ours", new Variant("ours (the default: 16 calibration windows, per-layer budgets)", ours)
                .withSamples(CarveOptions.Method.OURS.defaultSamples()));
        put("ours-s8", new Variant("ours with 8 calibration windows (the default before)", oursUniform).withSamples(8));
        put("profiles", new Variant("ours + profile clustering (5 passes)", Recipe.of(CarveOptions.Method.PROFILES)));
        put("profiles20", new Variant("ours + profile clustering (20 passes)",
                ours.withGrouping(Grouping.PROFILES, Recipe.MAX_PASSES)));
        put("fitted-profiles", new Variant("fitted + profile clustering (20 passes)",
                fitted.withGrouping(Grouping.PROFILES, Recipe.MAX_PASSES)));
        put("cmoe-contrib", new Variant("cmoe + contribution importance", cmoe.withImportance(Importance.CONTRIBUTION)));
        put("cmoe-profiles", new Variant("cmoe + profile clustering (20 passes)",
                cmoe.withGrouping(Grouping.PROFILES, Recipe.MAX_PASSES)));
        put("lsq", new Variant("lsq router", fitted.withRouter(Kind.LSQ)));
        put("fitted-k32", new Variant("fitted, K_a 32", fitted).withKAct(32));
        put("fitted-s32", new Variant("fitted, 32 calibration windows", fitted).withSamples(32));
        put("ours-s32", new Variant("ours, 32 calibration windows", oursUniform).withSamples(32));
        put("ours-s16", new Variant("ours, 16 calibration windows", oursUniform).withSamples(16));
        put("ours-s24", new Variant("ours, 24 calibration windows", oursUniform).withSamples(24));
        put("ours-s16-quantile", new Variant("ours, 16 windows, quantile balance, 20 sweeps", oursUniform)
                .withSamples(16).withBalance(20, CarveOptions.DEFAULT_GAMMA));
        put("ours-s16-quantile-b48", new Variant("ours, 16 windows, quantile balance on 16 + 48 windows", oursUniform)
                .withSamples(16).withBalance(20, CarveOptions.DEFAULT_GAMMA).withBalanceSamples(48));
        put("ours-s16-quantile-b112", new Variant("ours, 16 windows, quantile balance on 16 + 112 windows", oursUniform)
                .withSamples(16).withBalance(20, CarveOptions.DEFAULT_GAMMA).withBalanceSamples(112));
        put("ours-lsq", new Variant("ours with the least-squares router", oursUniform.withRouter(Kind.LSQ)));
        put("ours-s32-lsq", new Variant("ours, 32 windows, least-squares router", oursUniform.withRouter(Kind.LSQ))
                .withSamples(32));
        put("ours-k5", new Variant("ours, K_a 5", oursUniform).withKAct(5));
        put("ours-k20", new Variant("ours, K_a 20", oursUniform).withKAct(20));
        put("ours-sign", new Variant("ours + sign balance 500, γ 1e-3", oursUniform.withBalance(LoadBalancer.Rule.SIGN))
                .withBalance(500, 1e-3));
        put("ours-anneal", new Variant("ours + annealed balance 500, γ 1e-2", oursUniform.withBalance(LoadBalancer.Rule.ANNEALED))
                .withBalance(500, 1e-2));
        put("ours-s32-anneal", new Variant("ours, 32 windows, annealed balance 500, γ 1e-2",
                oursUniform.withBalance(LoadBalancer.Rule.ANNEALED))
                .withSamples(32).withBalance(500, 1e-2));
        put("ours-s64-anneal", new Variant("ours, 64 windows, annealed balance 500, γ 1e-2",
                oursUniform.withBalance(LoadBalancer.Rule.ANNEALED))
                .withSamples(64).withBalance(500, 1e-2));
        put("ours-quantile", new Variant("ours + quantile balance, 20 sweeps", oursUniform.withBalance(LoadBalancer.Rule.QUANTILE))
                .withBalance(20, CarveOptions.DEFAULT_GAMMA));
        put("ours-s32-quantile", new Variant("ours, 32 windows, quantile balance, 20 sweeps",
                oursUniform.withBalance(LoadBalancer.Rule.QUANTILE)).withSamples(32).withBalance(20, CarveOptions.DEFAULT_GAMMA));
        put("ours-s64-quantile", new Variant("ours, 64 windows, quantile balance, 20 sweeps",
                oursUniform.withBalance(LoadBalancer.Rule.QUANTILE)).withSamples(64).withBalance(20, CarveOptions.DEFAULT_GAMMA));
        put("ours-quantile-b56", new Variant("ours + quantile balance on 8 + 56 windows", oursUniform)
                .withBalance(20, CarveOptions.DEFAULT_GAMMA).withBalanceSamples(56));
        put("ours-uniform", new Variant("ours with N_k in every layer (the default before)",
                ours.withBudget(Carver.Budget.UNIFORM)).withSamples(CarveOptions.Method.OURS.defaultSamples()));
        put("ours-budget-free", new Variant("ours, per-layer budgets with no layer below 1",
                ours.withBudget(Carver.Budget.ADAPTIVE_FREE)).withSamples(CarveOptions.Method.OURS.defaultSamples()));
        put("ours-balanced", new Variant("ours, quantile balance, 20 sweeps", ours)
                .withSamples(CarveOptions.Method.OURS.defaultSamples()).withBalance(20, CarveOptions.DEFAULT_GAMMA));
        put("ours-balanced-b48", new Variant("ours, quantile balance on 16 + 48 windows", ours)
                .withSamples(CarveOptions.Method.OURS.defaultSamples()).withBalance(20, CarveOptions.DEFAULT_GAMMA)
                .withBalanceSamples(48));
        put("ours-balanced-b112", new Variant("ours, quantile balance on 16 + 112 windows", ours)
                .withSamples(CarveOptions.Method.OURS.defaultSamples()).withBalance(20, CarveOptions.DEFAULT_GAMMA)
                .withBalanceSamples(112));
        Recipe stale = ours.withRestream(false);
        put("ours-balanced-stale", new Variant("ours, quantile balance, not again on the budgeted stream", stale)
                .withSamples(CarveOptions.Method.OURS.defaultSamples()).withBalance(20, CarveOptions.DEFAULT_GAMMA));
        put("ours-balanced-stale-b48", new Variant("ours, balance on 16 + 48 windows, not again", stale)
                .withSamples(CarveOptions.Method.OURS.defaultSamples()).withBalance(20, CarveOptions.DEFAULT_GAMMA)
                .withBalanceSamples(48));
        put("cmoe-budget", new Variant("cmoe + per-layer budgets", cmoe.withBudget(Carver.Budget.ADAPTIVE)));
        put("cmoe-sign", new Variant("cmoe + sign balance 500, γ 1e-3", cmoe).withBalance(500, 1e-3));
    }

    private static void put(String id, Variant v) {
        VARIANTS.put(id, v);
    }

    /** One carving's scores: perplexity and per-layer imbalance on each text. */
    record Run(double[] ppl, double[][] imbalance, double carveSeconds) {
    }

    @Test
    void measure() throws Exception {
        Path model = Path.of(System.getProperty("cmoe.compare.model"));
        Path data = Path.of(System.getProperty("cmoe.compare.data",
                System.getProperty("user.home") + "/.cache/cmoe/data"));
        Path calib = data.resolve("train.txt");
        Path[] texts = {data.resolve("test.txt"),
            Path.of(System.getProperty("cmoe.compare.heldout", data.resolve("fortunes.txt").toString()))};
        String[] shapes = System.getProperty("cmoe.compare.shapes", "S3A3E8,S2A6E16,S2A2E16").split(",");
        long[] seeds = Arrays.stream(System.getProperty("cmoe.compare.seeds", "0,1,2").split(","))
                .mapToLong(Long::parseLong).toArray();
        int windows = Integer.getInteger("cmoe.compare.windows", 60);
        List<String> ids = List.of(System.getProperty("cmoe.compare.variants", "cmoe,ours").split(","));
        for (String id : ids) {
            if (!VARIANTS.containsKey(id)) {
                throw new IllegalArgumentException("unknown variant " + id + "; known: " + VARIANTS.keySet());
            }
        }
        int[][] scored = new int[texts.length][];
        int[] calibTokens;
        double[] dense = new double[texts.length];
        try (ModelDir d = ModelDir.open(model)) {
            calibTokens = d.tokenizer().encodeIds(Files.readString(calib, StandardCharsets.UTF_8), false);
            for (int i = 0; i < texts.length; i++) {
                int[] all = d.tokenizer().encodeIds(Files.readString(texts[i], StandardCharsets.UTF_8), false);
                scored[i] = Arrays.copyOf(all, Math.min(all.length, windows * SEQLEN));
                dense[i] = Perplexity.evaluate(d.model(), scored[i], SEQLEN, 8, w -> { }).perplexity();
            }
        }
        System.out.printf(Locale.ROOT, "texts: %s (%d tokens, dense %.2f), %s (%d tokens, dense %.2f)%n",
                texts[0].getFileName(), scored[0].length, dense[0], texts[1].getFileName(), scored[1].length, dense[1]);
        List<String> table = new ArrayList<>();
        table.add("| shape | variant | " + texts[0].getFileName() + " PPL | gap ÷ cmoe's | "
                + texts[1].getFileName() + " PPL | gap ÷ cmoe's | worst layer max/mean (" + texts[0].getFileName()
                + ", " + texts[1].getFileName() + ") | carve s |");
        table.add("|---|---|---|---|---|---|---|---|");
        for (String shape : shapes) {
            int[] sae = parse(shape);
            double[] cmoeMean = null;
            for (String id : ids) {
                Variant v = VARIANTS.get(id);
                List<Run> runs = new ArrayList<>();
                for (long seed : seeds) {
                    int samples = v.samples() > 0 ? v.samples() : CarveOptions.DEFAULT_SAMPLES;
                    CarveOptions opts = CarveOptions.of(sae[0], sae[1], sae[2])
                            .withCalibration(samples, SEQLEN, seed)
                            .withKAct(v.kAct() > 0 ? v.kAct() : CarveOptions.DEFAULT_K_ACT)
                            .withBalance(v.balanceSteps(), v.gamma()).withBalanceSamples(v.balanceSamples());
                    int[][] calibration = Calibration.windows(calibTokens, opts.drawnSamples(), SEQLEN, seed);
                    try (CarvedModel c = Carver.carveInMemory(model, calib, opts, v.recipe(), CarveListener.NONE,
                            (tok, len) -> calibration)) {
                        double[] ppl = new double[texts.length];
                        double[][] imbalance = new double[texts.length][];
                        for (int i = 0; i < texts.length; i++) {
                            resetLoads(c.model());
                            ppl[i] = Perplexity.evaluate(c.model(), scored[i], SEQLEN, 8, w -> { }).perplexity();
                            imbalance[i] = imbalances(c.model());
                        }
                        Run r = new Run(ppl, imbalance, c.report().seconds().total());
                        runs.add(r);
                        System.out.printf(Locale.ROOT, "%s %-34s seed %d: PPL %.2f / %.2f, imbalance %s / %s, carve %.1f s,"
                                        + " budgets %s%n", shape, v.name(), seed, ppl[0], ppl[1], fmt(imbalance[0]),
                                fmt(imbalance[1]), r.carveSeconds(), c.moe().hasLayerBudgets()
                                        ? c.moe().activePerLayer() : "uniform");
                    }
                }
                double[] mean = new double[texts.length];
                double[] sd = new double[texts.length];
                double[] worst = new double[texts.length];
                for (int i = 0; i < texts.length; i++) {
                    int t = i;
                    mean[i] = runs.stream().mapToDouble(r -> r.ppl()[t]).average().orElseThrow();
                    double m = mean[i];
                    sd[i] = Math.sqrt(runs.stream().mapToDouble(r -> (r.ppl()[t] - m) * (r.ppl()[t] - m)).sum()
                            / Math.max(1, runs.size() - 1));
                    worst[i] = runs.stream().mapToDouble(r -> Arrays.stream(r.imbalance()[t]).max().orElseThrow())
                            .average().orElseThrow();
                }
                if (id.equals("cmoe")) {
                    cmoeMean = mean;
                }
                double carve = runs.stream().mapToDouble(Run::carveSeconds).average().orElseThrow();
                StringBuilder row = new StringBuilder("| " + shape + " | " + v.name());
                for (int i = 0; i < texts.length; i++) {
                    row.append(String.format(Locale.ROOT, " | %.2f ± %.2f | %s", mean[i], sd[i], cmoeMean == null ? ""
                            : String.format(Locale.ROOT, "%.2f", (mean[i] / dense[i] - 1) / (cmoeMean[i] / dense[i] - 1))));
                }
                row.append(String.format(Locale.ROOT, " | %.2f, %.2f | %.1f |", worst[0], worst[1], carve));
                table.add(row.toString());
                System.out.println(row);
            }
        }
        System.out.printf(Locale.ROOT, "---- %d seeds %s, %d-token windows; dense %.2f / %.2f%n", seeds.length,
                Arrays.toString(seeds), SEQLEN, dense[0], dense[1]);
        table.forEach(System.out::println);
    }

    private static void resetLoads(LlamaModel model) {
        for (int l = 0; l < model.config().numLayers(); l++) {
            ((MoeFeedForward) model.feedForward(l)).resetLoads();
        }
    }

    private static double[] imbalances(LlamaModel model) {
        double[] out = new double[model.config().numLayers()];
        for (int l = 0; l < out.length; l++) {
            out[l] = BiasRule.imbalance(((MoeFeedForward) model.feedForward(l)).loads());
        }
        return out;
    }

    private static String fmt(double[] v) {
        StringBuilder s = new StringBuilder();
        for (double x : v) {
            s.append(s.length() == 0 ? "" : "/").append(String.format(Locale.ROOT, "%.2f", x));
        }
        return s.toString();
    }

    /** "S2A2E8" → {2, 2, 8}. */
    private static int[] parse(String shape) {
        String[] p = shape.substring(1).split("[AE]");
        return new int[] {Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2])};
    }
}
