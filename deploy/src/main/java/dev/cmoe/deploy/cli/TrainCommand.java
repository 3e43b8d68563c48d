package dev.cmoe.deploy.cli;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import dev.cmoe.model.tokenizer.BpeTrainer;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.model.train.Pretraining;
import dev.cmoe.model.train.TokenData;
import dev.cmoe.model.train.TrainConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code cmoe train}: pre-trains a small LLaMA on the demo corpus with DJL autograd. */
@Command(name = "train", mixinStandardHelpOptions = true,
        description = "Pre-train a LLaMA-architecture model on the corpus splits (trains the BPE tokenizer first if"
                + " needed). Re-running with the same --out resumes from its last checkpoint.")
public final class TrainCommand implements Callable<Integer> {
    @Option(names = "--config", required = true, description = "Training config JSON (e.g. models/small.json).")
    Path config;

    @Option(names = "--data", description = "Corpus directory from 'cmoe data fetch' (default: $CMOE_DATA or"
            + " ~/.cache/cmoe/data; fetched if missing).")
    Path data;

    @Option(names = "--out", required = true, description = "Checkpoint directory (Hugging Face layout).")
    Path out;

    @Option(names = "--max-minutes", defaultValue = "0",
            description = "Stop with a resumable checkpoint after this many minutes; 0 = no limit.")
    double maxMinutes;

    @Override
    public Integer call() throws Exception {
        TrainConfig run = TrainConfig.load(config);
        Path dir = data != null ? data : BrownCorpus.defaultDataDir();
        BrownCorpus.fetch(dir); // no-op when the splits are already there
        List<String> trainDocs = BrownCorpus.readSplit(dir, Split.TRAIN);
        Path tokDir = dir.resolve("tokenizer-" + run.vocabSize());
        if (!Files.exists(tokDir.resolve("tokenizer.json"))) {
            System.err.println("training a " + run.vocabSize() + "-token byte-level BPE on the train split…");
            BpeTrainer.train(trainDocs, run.vocabSize(), tokDir);
        }
        TokenData train;
        TokenData validation;
        ModelConfig modelConfig;
        try (TextTokenizer tok = TextTokenizer.load(tokDir)) {
            train = TokenData.ofDocuments(encode(tok, trainDocs), tok.bosId(), tok.eosId());
            validation = TokenData.ofDocuments(encode(tok, BrownCorpus.readSplit(dir, Split.VALIDATION)), tok.bosId(),
                    tok.eosId());
            modelConfig = Pretraining.modelConfig(run, tok.bosId(), tok.eosId());
        }
        System.err.printf(Locale.ROOT, "train %,d tokens, validation %,d tokens; %d steps of %d x %d tokens%n",
                train.size(), validation.size(), run.steps(), run.batchSize(), run.seqLen());
        long deadline = maxMinutes > 0 ? System.nanoTime() + (long) (maxMinutes * 60e9) : Long.MAX_VALUE;
        long tokensPerStep = (long) run.batchSize() * run.seqLen();
        Pretraining.Summary s;
        try (ProgressBar bar = Progress.bar("train", run.steps() * tokensPerStep, "tok")) {
            s = Pretraining.run(run, modelConfig, train, validation, tokDir, out,
                    () -> maxMinutes > 0 && System.nanoTime() - deadline > 0,
                    new Pretraining.Listener() {
                        double val = Double.NaN;

                        @Override
                        public void onStep(int step, double loss, double gradNorm, double lr) {
                            bar.stepTo(step * tokensPerStep);
                            bar.setExtraMessage(String.format(Locale.ROOT, " loss %.3f val %.3f", loss, val));
                        }

                        @Override
                        public void onValidation(int step, double loss) {
                            val = loss;
                            System.err.printf(Locale.ROOT, "%nstep %d validation loss %.4f (ppl %.1f)%n", step, loss,
                                    Math.exp(loss));
                        }

                        @Override
                        public void onCheckpoint(int step, Path where) {
                        }
                    });
        }
        System.out.printf(Locale.ROOT, "steps %d, train loss %.4f, validation loss %.4f, %.0f s, %,d tokens -> %s%n",
                s.steps(), s.trainLoss(), s.validationLoss(), s.seconds(), s.tokens(), out);
        return 0;
    }

    private static List<int[]> encode(TextTokenizer tok, List<String> docs) {
        List<int[]> out = new ArrayList<>(docs.size());
        for (String d : docs) {
            out.add(tok.encodeIds(d, false));
        }
        return out;
    }
}
