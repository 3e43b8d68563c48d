package dev.cmoe.deploy.cli;

import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import dev.cmoe.model.eval.NgramBaseline;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code cmoe baselines}: unigram and bigram perplexities that put a model's perplexity in scale. */
@Command(name = "baselines", mixinStandardHelpOptions = true,
        description = "Unigram and bigram perplexity of the corpus test split, with a model's tokenizer and the"
                + " same windows as eval-ppl (bigram λ tuned on the validation split).")
public final class BaselinesCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Model directory whose tokenizer to use.")
    Path model;

    @Option(names = "--data", description = "Corpus directory (default: $CMOE_DATA or ~/.cache/cmoe/data).")
    Path data;

    @Option(names = "--seqlen", defaultValue = "256", description = "Window length (default: ${DEFAULT-VALUE}).")
    int seqlen;

    @Override
    public Integer call() throws Exception {
        Path dir = data != null ? data : BrownCorpus.defaultDataDir();
        BrownCorpus.fetch(dir);
        try (TextTokenizer tok = TextTokenizer.load(model)) {
            int[] train = tokens(tok, dir, Split.TRAIN);
            int[] validation = tokens(tok, dir, Split.VALIDATION);
            int[] test = tokens(tok, dir, Split.TEST);
            NgramBaseline b = new NgramBaseline(train, tok.vocabSize());
            double lambda = b.tune(validation, seqlen);
            System.out.printf(Locale.ROOT, "test split %d tokens, windows of %d%nunigram PPL %.2f%n"
                            + "bigram PPL %.2f (lambda %.2f)%n", test.length, seqlen,
                    b.unigramPerplexity(test, seqlen), b.bigramPerplexity(test, seqlen), lambda);
        }
        return 0;
    }

    /** The split's text as eval-ppl reads it: the whole file, no BOS. */
    private static int[] tokens(TextTokenizer tok, Path dir, Split split) throws Exception {
        return tok.encodeIds(Files.readString(BrownCorpus.splitFile(dir, split), StandardCharsets.UTF_8), false);
    }
}
