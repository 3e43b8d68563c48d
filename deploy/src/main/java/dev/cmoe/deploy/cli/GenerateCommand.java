package dev.cmoe.deploy.cli;

import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.tokenizer.StreamDecoder;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code cmoe generate}: in-process generation that streams text to stdout as tokens are produced. */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Generate a continuation of a prompt in-process (no server), streaming text to stdout.")
public final class GenerateCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Model directory.")
    Path model;

    @Mixin
    DtypeOption dtype;

    @Option(names = "--max-new-tokens", defaultValue = "64", description = "Most tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxNewTokens;

    @Option(names = "--temperature", defaultValue = "0.8", description = "0 = greedy (default: ${DEFAULT-VALUE}).")
    double temperature;

    @Option(names = "--top-k", defaultValue = "0", description = "Keep the k most likely tokens; 0 = off.")
    int topK;

    @Option(names = "--top-p", defaultValue = "0.95", description = "Nucleus mass (default: ${DEFAULT-VALUE}).")
    double topP;

    @Option(names = "--min-p", defaultValue = "0", description = "Drop tokens below min-p × top probability.")
    double minP;

    @Option(names = "--repetition-penalty", defaultValue = "1.0", description = "1 = off (default: ${DEFAULT-VALUE}).")
    double repetitionPenalty;

    @Option(names = "--seed", defaultValue = "0", description = "Random seed (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--no-bos", description = "Do not prepend the BOS token to the prompt.")
    boolean noBos;

    @Parameters(index = "0", description = "The prompt.")
    String prompt;

    @Override
    public Integer call() {
        SamplingParams params = new SamplingParams(temperature, topK, topP, minP, repetitionPenalty, seed);
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        try (ModelDir dir = ModelDir.open(model, dtype.apply(LoadSpec.full()))) {
            TextTokenizer tok = dir.tokenizer();
            int[] promptIds = tok.encodeIds(prompt, !noBos);
            Set<Integer> stops = new HashSet<>(dir.config().eosTokenIds());
            if (tok.eosId() >= 0) {
                stops.add(tok.eosId());
            }
            StreamDecoder text = tok.streamDecoder();
            out.print(prompt);
            long start = System.nanoTime();
            Generator.Result r = Generator.generate(dir.model(), promptIds, maxNewTokens, params, stops, id -> {
                if (!stops.contains(id)) {
                    out.print(text.push(id));
                }
            });
            out.print(text.flush());
            out.println();
            double secs = (System.nanoTime() - start) / 1e9;
            System.err.printf(Locale.ROOT, "[%d prompt tokens, %d generated, finish %s, %.1f tokens/s]%n",
                    promptIds.length, r.tokens().length, r.reason(), r.tokens().length / secs);
        }
        return 0;
    }
}
