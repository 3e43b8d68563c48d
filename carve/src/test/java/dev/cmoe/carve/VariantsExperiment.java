package dev.cmoe.carve;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import dev.cmoe.carve.RouterFit.Kind;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.eval.Perplexity;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Not a test: the measurement behind {@link CarveOptions.Method#OURS}. Carves a trained model
 * with each variant at the same active ratio and prints validation perplexity. Run by hand:
 *
 * <pre>
 * ./mvnw -o -pl carve -am test -Dtest=VariantsExperiment -Dsurefire.failIfNoSpecifiedTests=false \
 *     -Dcmoe.experiment.model=/path/to/model -Dcmoe.experiment.data=$HOME/.cache/cmoe/data \
 *     [-Dcmoe.experiment.shapes=S2A2E8,S1A1E8] [-Dcmoe.experiment.windows=200] [-Dcmoe.experiment.split=test]
 *     [-Dcmoe.experiment.only=cmoe,ours] [-Dcmoe.experiment.balance=500] [-Dcmoe.experiment.oracle=true]
 * </pre>
 */
@EnabledIfSystemProperty(named = "cmoe.experiment.model", matches = ".+")
class VariantsExperiment {

    record Variant(String id, String name, Carver.Recipe recipe) {
    }

    static final int PASSES = Carver.Recipe.MAX_PASSES;
    static final List<Variant> VARIANTS = List.of(
            new Variant("cmoe", "cmoe (reference)", Carver.Recipe.of(CarveOptions.Method.CMOE)),
            new Variant("iter", "iterated clustering", new Carver.Recipe(PASSES, Kind.REPRESENTATIVE)),
            new Variant("iter-mean", "iterated + mean router", new Carver.Recipe(PASSES, Kind.MEAN)),
            new Variant("iter-fitted", "iterated + fitted router", new Carver.Recipe(PASSES, Kind.FITTED)),
            new Variant("iter-lsq", "iterated + lsq router", new Carver.Recipe(PASSES, Kind.LSQ)),
            new Variant("mean", "mean router", new Carver.Recipe(1, Kind.MEAN)),
            new Variant("fitted", "fitted router", new Carver.Recipe(1, Kind.FITTED)),
            new Variant("lsq", "lsq router", new Carver.Recipe(1, Kind.LSQ)),
            new Variant("ours", "ours", Carver.Recipe.of(CarveOptions.Method.OURS)),
            new Variant("random-groups", "random groups (ablation)", Carver.Recipe.of(CarveOptions.Method.RANDOM_GROUPS)),
            new Variant("random-groups-fitted", "random groups + fitted router",
                    new Carver.Recipe(1, Kind.FITTED, true)));

    @Test
    void measure() throws Exception {
        Path model = Path.of(System.getProperty("cmoe.experiment.model"));
        Path data = Path.of(System.getProperty("cmoe.experiment.data",
                System.getProperty("user.home") + "/.cache/cmoe/data"));
        Path calib = data.resolve("train.txt");
        String[] shapes = System.getProperty("cmoe.experiment.shapes", "S2A2E8").split(",");
        int windows = Integer.getInteger("cmoe.experiment.windows", 0);
        int balance = Integer.getInteger("cmoe.experiment.balance", 0);
        List<String> only = List.of(System.getProperty("cmoe.experiment.only", "cmoe,iter,iter-mean,iter-fitted,"
                + "iter-lsq,mean,fitted,lsq").split(","));
        String split = System.getProperty("cmoe.experiment.split", "validation");
        String validation = Files.readString(data.resolve(split + ".txt"), StandardCharsets.UTF_8);
        System.out.println("scoring " + split + ".txt");
        int seqlen;
        int[] tokens;
        int[][] calibration; // the same windows for every variant, tokenised once
        try (ModelDir dense = ModelDir.open(model)) {
            seqlen = Math.min(256, dense.config().maxPositionEmbeddings());
            tokens = dense.tokenizer().encodeIds(validation, false);
            calibration = Calibration.windows(dense.tokenizer(), calib, Integer.getInteger("cmoe.experiment.samples", 8),
                    seqlen, 0);
            if (windows > 0) {
                tokens = Arrays.copyOf(tokens, Math.min(tokens.length, windows * seqlen));
            }
            Perplexity.Result r = Perplexity.evaluate(dense.model(), tokens, seqlen, 8, w -> { });
            print("dense", "", r, 0, 0, 0);
        }
        List<String> lines = new ArrayList<>();
        for (String shape : shapes) {
            int[] sae = parse(shape);
            for (Variant v : VARIANTS) {
                if (!only.contains(v.id())) {
                    continue;
                }
                for (int steps : balance > 0 ? new int[] {0, balance} : new int[] {0}) {
                    CarveOptions opts = CarveOptions.of(sae[0], sae[1], sae[2])
                            .withCalibration(calibration.length, seqlen, 0)
                            .withBalance(steps, CarveOptions.DEFAULT_GAMMA);
                    try (CarvedModel c = Carver.carveInMemory(model, calib, opts, v.recipe(), CarveListener.NONE,
                            (tok, len) -> calibration)) {
                        Perplexity.Result r = Perplexity.evaluate(c.model(), tokens, seqlen, 8, w -> { });
                        double before = c.report().layers().stream()
                                .mapToDouble(CarveReport.Layer::imbalanceBefore).average().orElse(0);
                        double after = c.report().layers().stream()
                                .mapToDouble(CarveReport.Layer::imbalanceAfter).average().orElse(0);
                        CarveReport.Timings tm = c.report().seconds();
                        System.out.printf(Locale.ROOT, "  load %.1f s, text %.1f s, layers %.1f s: %s%n", tm.load(),
                                tm.calibrationText(), tm.carve(), c.report().layers().stream()
                                        .map(l -> String.format(Locale.ROOT, "[cap %.1f mk %.1f cl %.1f(%d) rt %.1f bal %.1f]",
                                                l.seconds().capture(), l.seconds().markers(), l.seconds().cluster(),
                                                l.clusterPasses(), l.seconds().router(), l.seconds().balance()))
                                        .toList());
                        lines.add(print(shape, v.name() + (steps > 0 ? " + balance " + steps : ""), r, before, after,
                                c.report().seconds().total()));
                    }
                }
            }
        }
        if (Boolean.getBoolean("cmoe.experiment.oracle")) {
            for (String shape : shapes) {
                int[] sae = parse(shape);
                CarveOptions opts = CarveOptions.of(sae[0], sae[1], sae[2]).withCalibration(calibration.length, seqlen, 0);
                try (CarvedModel c = Carver.carveInMemory(model, calib, opts, VARIANTS.get(0).recipe(),
                        CarveListener.NONE, (tok, len) -> calibration)) {
                    for (int l = 0; l < c.model().config().numLayers(); l++) {
                        MoeFeedForward moe = (MoeFeedForward) c.model().feedForward(l);
                        c.model().replaceFeedForward(l, new Oracle(moe, sae[1]));
                    }
                    Perplexity.Result r = Perplexity.evaluate(c.model(), tokens, seqlen, 8, w -> { });
                    lines.add(print(shape, "oracle: top-N_k experts by output norm", r, 0, 0, 0));
                }
            }
        }
        System.out.println("---- summary");
        lines.forEach(System.out::println);
    }

    private static String print(String shape, String variant, Perplexity.Result r, double before, double after,
                                double carveSeconds) {
        String line = String.format(Locale.ROOT, "%-8s %-40s PPL %9.3f  (%d tokens)  imbalance %.2f -> %.2f  carve %.1f s",
                shape, variant, r.perplexity(), r.tokens(), before, after, carveSeconds);
        System.out.println(line);
        return line;
    }

    /**
     * Headroom, not a router: runs every routed expert and keeps the N_k with the largest output
     * norm per token (weight 1). Shows how much a better router could gain at this carving.
     */
    private record Oracle(MoeFeedForward moe, int nActive) implements FeedForward {
        @Override
        public NDArray forward(NDArray x) {
            int nr = moe.config().routed();
            NDList outs = new NDList();
            for (int j = 0; j < nr; j++) {
                outs.add(moe.expert(j, x).expandDims(1));
            }
            NDArray all = NDArrays.concat(outs, 1);                        // (T, N_r, hidden)
            NDArray norms = all.norm(new int[] {2});                        // (T, N_r)
            NDArray top = norms.topK(nActive, 1, true, false).get(1);       // (T, N_k)
            NDArray mask = top.oneHot(nr).sum(new int[] {1}).expandDims(2); // (T, N_r, 1)
            return moe.shared(x).add(all.mul(mask).sum(new int[] {1}));
        }

        @Override
        public void close() {
            moe.close(); // the oracle replaced it in the model, so the model closes it through us
        }
    }

    /** "S2A2E8" → {2, 2, 8}. */
    private static int[] parse(String shape) {
        String[] p = shape.substring(1).split("[AE]");
        return new int[] {Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2])};
    }
}
