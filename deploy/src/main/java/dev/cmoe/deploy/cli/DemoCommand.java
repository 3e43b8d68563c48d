package dev.cmoe.deploy.cli;

import dev.cmoe.model.ModelDir;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import dev.cmoe.model.eval.Perplexity;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.tokenizer.StreamDecoder;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code cmoe demo}: the main job end to end on the shipped model. */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Fetch the corpus if needed, stream a generation from the shipped model and measure its test"
                + " perplexity.")
public final class DemoCommand implements Callable<Integer> {
    @Option(names = "--model", description = "Dense model (default: models/brown-llama of this checkout).")
    Path model;

    @Option(names = "--prompt", defaultValue = "The jury said", description = "Prompt (default: ${DEFAULT-VALUE}).")
    String prompt;

    @Option(names = "--max-new-tokens", defaultValue = "48", description = "Tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxNewTokens;

    @Override
    public Integer call() throws Exception {
        Path dense = model != null ? model : Paths.shippedModel();
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        Path data = BrownCorpus.defaultDataDir();
        BrownCorpus.fetch(data);
        String test = Files.readString(BrownCorpus.splitFile(data, Split.TEST), StandardCharsets.UTF_8);
        try (ModelDir md = ModelDir.open(dense)) {
            out.println("== " + dense + " (" + md.config().numLayers() + " layers, hidden " + md.config().hiddenSize()
                    + ", FFN " + md.config().intermediateSize() + ")");
            stream(md, out);
            int seqlen = Math.min(256, md.config().maxPositionEmbeddings());
            int[] tokens = md.tokenizer().encodeIds(test, false);
            Perplexity.Result r;
            try (ProgressBar bar = Progress.bar("test PPL", tokens.length / seqlen, "win")) {
                r = Perplexity.evaluate(md.model(), tokens, seqlen, 8, bar::stepTo);
            }
            out.printf(Locale.ROOT, "test split: PPL %.2f over %d tokens (windows of %d)%n", r.perplexity(),
                    r.tokens(), seqlen);
        }
        return 0;
    }

    /** Prints the prompt and streams a seeded sample after it. */
    private void stream(ModelDir md, PrintStream out) {
        int[] ids = md.tokenizer().encodeIds(prompt, true);
        Set<Integer> stops = new HashSet<>(md.config().eosTokenIds());
        StreamDecoder text = md.tokenizer().streamDecoder();
        out.print(prompt);
        Generator.generate(md.model(), ids, maxNewTokens, new SamplingParams(0.7, 40, 0.95, 0, 1.1, 7), stops,
                id -> {
                    if (!stops.contains(id)) {
                        out.print(text.push(id));
                    }
                });
        out.println(text.flush());
    }
}
