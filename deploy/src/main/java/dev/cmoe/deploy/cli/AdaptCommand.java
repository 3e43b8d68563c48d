package dev.cmoe.deploy.cli;

import dev.cmoe.carve.adapt.AdaptOptions;
import dev.cmoe.carve.adapt.AdaptReport;
import dev.cmoe.carve.adapt.Adaptation;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.model.train.LoraSpec;
import dev.cmoe.model.train.TokenData;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code cmoe adapt}: CMoE's lightweight adaptation of a carved model (LoRA, router scales, bias). */
@Command(name = "adapt", mixinStandardHelpOptions = true,
        description = "Fine-tune a carved model briefly: LoRA adapters on q/k/v/o and every expert's gate/up/down,"
                + " the router scales u, and the load-balancing bias b (γ rule after every step); router and base"
                + " weights stay frozen. Writes a normal carved checkpoint with the adapters merged, the training"
                + " history in carve_report.json and adapt-curves.png. Re-running with the same --out resumes.")
public final class AdaptCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Carved model directory (from 'cmoe carve').")
    Path model;

    @Option(names = "--out", required = true, description = "Output directory: the adapted carved model.")
    Path out;

    @Option(names = "--data", description = "Corpus directory from 'cmoe data fetch' (default: $CMOE_DATA or"
            + " ~/.cache/cmoe/data; fetched if missing). Trains on its train split, validates on its validation split.")
    Path data;

    @Option(names = "--samples", defaultValue = "2048",
            description = "Training windows drawn at random offsets of the train split (default: ${DEFAULT-VALUE}).")
    int samples;

    @Option(names = "--seqlen", defaultValue = "512", description = "Tokens per window (default: ${DEFAULT-VALUE});"
            + " clamped to the model's context, with a note.")
    int seqlen;

    @Option(names = "--epochs", defaultValue = "1",
            description = "Passes over the windows (default: ${DEFAULT-VALUE}).")
    int epochs;

    @Option(names = "--batch", defaultValue = "2", description = "Windows per step (default: ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--lora-rank", defaultValue = "8", description = "LoRA rank r (default: ${DEFAULT-VALUE}).")
    int loraRank;

    @Option(names = "--lora-alpha", defaultValue = "32", description = "LoRA alpha; adapters are scaled by alpha / r"
            + " (default: ${DEFAULT-VALUE}).")
    double loraAlpha;

    @Option(names = "--lora-dropout", defaultValue = "0.1",
            description = "Dropout on the adapters' inputs while training (default: ${DEFAULT-VALUE}).")
    double loraDropout;

    @Option(names = "--lr", defaultValue = "5.7e-5", description = "Learning rate of the LoRA matrices, decayed"
            + " linearly to 0 (default: ${DEFAULT-VALUE}).")
    double lr;

    @Option(names = "--scale-lr", defaultValue = "1e-3",
            description = "Learning rate of the router scales u, same decay (default: ${DEFAULT-VALUE}).")
    double scaleLr;

    @Option(names = "--bias-speed", defaultValue = "1e-3", description = "γ: after every step each expert's bias b"
            + " moves by γ towards the mean load (0 = frozen; default: ${DEFAULT-VALUE}).")
    double biasSpeed;

    @Option(names = "--grad-clip", defaultValue = "1.0",
            description = "Global gradient-norm clip (default: ${DEFAULT-VALUE}).")
    double gradClip;

    @Option(names = "--seed", defaultValue = "0", description = "Seed of the windows, their order, the adapters'"
            + " initialisation and dropout (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--eval-samples", defaultValue = "32", description = "Validation windows scored before and"
            + " after (0 = none; default: ${DEFAULT-VALUE}).")
    int evalSamples;

    @Option(names = "--log-every", defaultValue = "10",
            description = "Steps per history entry in the report (default: ${DEFAULT-VALUE}).")
    int logEvery;

    @Option(names = "--checkpoint-every", defaultValue = "100",
            description = "Steps between resumable checkpoints (default: ${DEFAULT-VALUE}).")
    int checkpointEvery;

    @Option(names = "--max-minutes", defaultValue = "0",
            description = "Stop with a resumable checkpoint after this many minutes; 0 = no limit.")
    double maxMinutes;

    @Override
    public Integer call() throws Exception {
        // flags first: a bad value fails before the corpus or the model is touched
        AdaptOptions opts = new AdaptOptions(samples, seqlen, epochs, batch,
                new LoraSpec(loraRank, loraAlpha, loraDropout), lr, scaleLr, biasSpeed, gradClip, seed, evalSamples,
                logEvery, checkpointEvery);
        if (maxMinutes < 0) {
            throw new IllegalArgumentException("--max-minutes must not be negative, got " + maxMinutes);
        }
        if (!Files.isRegularFile(model.resolve("config.json"))) {
            throw new IllegalArgumentException("--model " + model + " is not a model directory (no config.json)");
        }
        ModelConfig config = ModelConfig.load(model);
        if (MoeConfig.of(config).isEmpty()) {
            throw new IllegalArgumentException("--model " + model + " is a dense model (its config.json has no '"
                    + MoeConfig.KEY + "' block); carve it first with 'cmoe carve'");
        }
        if (seqlen > config.contextLength()) {
            System.err.printf(Locale.ROOT, "note: --seqlen %d exceeds the model's context of %d tokens; using %d%n",
                    seqlen, config.contextLength(), opts.seqLen(config));
        }
        Path dir = data != null ? data : BrownCorpus.defaultDataDir();
        BrownCorpus.fetch(dir); // no-op when the splits are already there
        TokenData train;
        TokenData validation;
        try (TextTokenizer tok = TextTokenizer.load(model)) {
            train = tokens(tok, BrownCorpus.readSplit(dir, Split.TRAIN));
            validation = tokens(tok, BrownCorpus.readSplit(dir, Split.VALIDATION));
        }
        System.err.printf(Locale.ROOT, "train %,d tokens, validation %,d tokens; %d samples x %d tokens, %d epoch(s),"
                + " %d steps of batch %d%n", train.size(), validation.size(), samples, opts.seqLen(config), epochs,
                opts.totalSteps(), batch);
        long deadline = System.nanoTime() + (long) (maxMinutes * 60e9);
        Bar bar = new Bar();
        AdaptReport r;
        try {
            r = Adaptation.run(model, train, validation, out, opts,
                    () -> maxMinutes > 0 && System.nanoTime() - deadline > 0, bar);
        } finally {
            bar.close();
        }
        print(r);
        return 0;
    }

    private static TokenData tokens(TextTokenizer tok, List<String> docs) {
        List<int[]> ids = new ArrayList<>(docs.size());
        for (String d : docs) {
            ids.add(tok.encodeIds(d, false));
        }
        return TokenData.ofDocuments(ids, tok.bosId(), tok.eosId());
    }

    private void print(AdaptReport r) {
        if (!r.finished()) {
            System.out.printf(Locale.ROOT, "stopped at step %d of %d (resumable checkpoint in %s); run the same"
                    + " command again to continue%n", r.steps(), r.totalSteps(), out);
        } else {
            System.out.printf(Locale.ROOT, "adapted %s -> %s: %d steps, %,d tokens, %.0f s (%.0f tokens/s)%n",
                    r.model(), out, r.steps(), r.tokens(), r.seconds(), r.tokensPerSecond());
        }
        int skipped = r.history().stream().mapToInt(AdaptReport.Entry::skipped).sum();
        if (skipped > 0) {
            System.out.printf(Locale.ROOT, "  %d step(s) skipped for a non-finite loss or gradient (see the history"
                    + " in carve_report.json)%n", skipped);
        }
        if (r.before() != null) {
            System.out.printf(Locale.ROOT, "  validation loss %.4f (ppl %.2f) before%s%n", r.before().loss(),
                    r.before().perplexity(), r.after() == null ? "" : String.format(Locale.ROOT,
                            ", %.4f (ppl %.2f) after", r.after().loss(), r.after().perplexity()));
            for (int l = 0; l < r.before().imbalance().length; l++) {
                System.out.printf(Locale.ROOT, "  layer %d: load imbalance %.2f%s, mean |u| %.4f%n", l,
                        r.before().imbalance()[l], r.after() == null ? "" : String.format(Locale.ROOT, " -> %.2f",
                                r.after().imbalance()[l]), meanAbs(r.layers().get(l).scale()));
            }
        }
    }

    private static double meanAbs(float[] v) {
        double s = 0;
        for (float x : v) {
            s += Math.abs(x);
        }
        return v.length == 0 ? 0 : s / v.length;
    }

    /** The progress bar, made when the run says where it starts (a resumed run starts part-way). */
    private static final class Bar implements Adaptation.Listener, AutoCloseable {
        private ProgressBar bar;

        @Override
        public void onStart(int step, int totalSteps, long tokens, long totalTokens, int seqLen) {
            if (step == totalSteps) {
                System.err.printf(Locale.ROOT, "the adaptation in this --out is already finished (%d steps);"
                        + " nothing to do%n", totalSteps);
                return;
            }
            if (step > 0) {
                System.err.printf(Locale.ROOT, "resuming at step %d of %d%n", step, totalSteps);
            }
            bar = Progress.bar("adapt", totalTokens, "tok", tokens);
        }

        @Override
        public void onStep(int step, long tokens, double loss, double imbalance) {
            bar.stepTo(tokens);
            bar.setExtraMessage(String.format(Locale.ROOT, " step %d loss %.3f imbalance %.2f", step, loss,
                    imbalance));
        }

        @Override
        public void onSkipped(int step, double loss, double gradNorm) {
            System.err.printf(Locale.ROOT, "%swarning: step %d skipped, loss %s and gradient norm %s are not both"
                    + " finite (at %d in a row the run stops)%n", bar == null ? "" : "\n", step, loss, gradNorm,
                    Adaptation.MAX_SKIPPED_IN_A_ROW);
        }

        @Override
        public void onEval(String phase, AdaptReport.Eval eval) {
            System.err.printf(Locale.ROOT, "%svalidation loss %s: %.4f (ppl %.2f) on %d windows%n",
                    bar == null ? "" : "\n", phase, eval.loss(), eval.perplexity(), eval.windows());
        }

        @Override
        public void onCheckpoint(int step, Path dir) {
        }

        @Override
        public void close() {
            if (bar != null) {
                bar.close();
            }
        }
    }
}
