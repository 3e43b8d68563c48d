package dev.cmoe.deploy.cli;

import dev.cmoe.carve.CarveListener;
import dev.cmoe.carve.CarveOptions;
import dev.cmoe.carve.CarveReport;
import dev.cmoe.carve.Carver;
import dev.cmoe.carve.report.CarvePlots;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import dev.cmoe.model.LoadSpec;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code cmoe carve}: dense checkpoint → carved MoE checkpoint, with a report and plots. */
@Command(name = "carve", mixinStandardHelpOptions = true,
        description = "Carve a dense model's FFNs into S shared + (E - S) routed experts, A active per token,"
                + " with an analytical router (CMoE). Writes a loadable MoE checkpoint, carve_report.json and PNGs.")
public final class CarveCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Dense model directory.")
    Path model;

    @Option(names = "--out", required = true, description = "Output directory (must not exist unless --force).")
    Path out;

    @Option(names = "--shared", required = true, description = "S: expert groups merged into the shared expert.")
    int shared;

    @Option(names = "--active", required = true,
            description = "A: routed experts per token (with per-layer budgets, their mean over the layers).")
    int active;

    @Option(names = "--experts", required = true, description = "E: groups the FFN neurons are split into.")
    int experts;

    @Option(names = "--calib", description = "Calibration text (default: the corpus train split).")
    Path calib;

    @Option(names = "--calib-samples", defaultValue = "0",
            description = "Calibration windows (default 0: the method's, 16 for ours, 8 for cmoe and the others"
                    + " as in the paper).")
    int calibSamples;

    @Option(names = "--calib-seqlen", defaultValue = "0",
            description = "Tokens per window (default: min(512, the model's context)).")
    int calibSeqlen;

    @Option(names = "--k-act", defaultValue = "10", description = "K_a: neurons marked per token (default: ${DEFAULT-VALUE}).")
    int kAct;

    @Option(names = "--seed", defaultValue = "0", description = "Seed of the calibration windows (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--balance-steps", defaultValue = "0",
            description = "Rounds of training-free bias balancing per layer on the calibration tokens"
                    + " (default: ${DEFAULT-VALUE}): cmoe and fitted move b by --balance-gamma a round; ours and"
                    + " profiles sweep the experts, setting each one's exact threshold, and need no γ (10-20 sweeps"
                    + " suffice).")
    int balanceSteps;

    @Option(names = "--balance-samples", defaultValue = "0",
            description = "Further windows of the calibration text that only the bias balancing sees (default:"
                    + " ${DEFAULT-VALUE}): more tokens make the balance hold on other text, at the cost of passing"
                    + " them through the model, not of clustering them.")
    int balanceSamples;

    @Option(names = "--balance-gamma", defaultValue = "1e-3", description = "Bias step γ (default: ${DEFAULT-VALUE}).")
    double balanceGamma;

    @Option(names = "--method", defaultValue = "ours",
            description = "cmoe (the reference); ours (neurons ranked by their contribution to the output,"
                    + " fitted router at unit score spread, quantile bias balancing); fitted (the reference's ranking with the fitted"
                    + " router); profiles (ours with co-activation clustering); or the ablations random-groups and"
                    + " random-router; default ${DEFAULT-VALUE}.")
    String method;

    @Option(names = "--layer-budgets", defaultValue = "method",
            description = "Routed experts per token by layer: adaptive (shared out over the layers by each layer's"
                    + " measured carving error, within the same total, no layer below A - 1), uniform (A in every"
                    + " layer), or method (adaptive for ours, uniform for the others); default ${DEFAULT-VALUE}.")
    String layerBudgets;

    @Mixin
    DtypeOption dtype;

    @Option(names = "--force", description = "Replace an existing output directory.")
    boolean force;

    @Override
    public Integer call() throws Exception {
        CarveOptions.Method m = switch (method.toLowerCase(Locale.ROOT)) {
            case "cmoe" -> CarveOptions.Method.CMOE;
            case "ours" -> CarveOptions.Method.OURS;
            case "fitted" -> CarveOptions.Method.FITTED;
            case "profiles" -> CarveOptions.Method.PROFILES;
            case "random-groups" -> CarveOptions.Method.RANDOM_GROUPS;
            case "random-router" -> CarveOptions.Method.RANDOM_ROUTER;
            default -> throw new IllegalArgumentException("--method must be cmoe, ours, fitted, profiles,"
                    + " random-groups or random-router, got '" + method + "'");
        };
        CarveOptions.Budgets budgets = switch (layerBudgets.toLowerCase(Locale.ROOT)) {
            case "method" -> CarveOptions.Budgets.METHOD;
            case "uniform" -> CarveOptions.Budgets.UNIFORM;
            case "adaptive" -> CarveOptions.Budgets.ADAPTIVE;
            default -> throw new IllegalArgumentException("--layer-budgets must be adaptive, uniform or method, got '"
                    + layerBudgets + "'");
        };
        int samples = calibSamples == 0 ? m.defaultSamples() : calibSamples;
        CarveOptions opts = new CarveOptions(shared, active, experts, kAct, samples, calibSeqlen, seed,
                balanceSteps, balanceGamma, balanceSamples, m, budgets, force);
        Path text = calib;
        if (text == null) {
            Path data = BrownCorpus.defaultDataDir();
            BrownCorpus.fetch(data);
            text = BrownCorpus.splitFile(data, Split.TRAIN);
        }
        CarveReport r = Carver.carve(model, dtype.apply(LoadSpec.full()), text, out, opts,
                CarveListener.progressBars());
        CarvePlots.write(r, out);
        System.out.printf(Locale.ROOT, "carved %s -> %s: S%dA%dE%d (%s), expert size %d, %d calibration tokens,"
                        + " %.1f s%n", model, out, shared, active, experts, m.name().toLowerCase(Locale.ROOT),
                r.expertSize(), r.calibrationTokens(), r.seconds().total());
        for (CarveReport.Layer l : r.layers()) {
            System.out.printf(Locale.ROOT, "  layer %d: mean rate %.4f, shared %d neurons, %d routed per token,"
                            + " imbalance %.2f -> %.2f%n", l.layer(), l.rateStats().mean(), l.sharedSize(), l.active(),
                    l.imbalanceBefore(), l.imbalanceAfter());
        }
        return 0;
    }
}
