package dev.cmoe.deploy.cli;

import dev.cmoe.carve.CarveListener;
import dev.cmoe.carve.CarveOptions;
import dev.cmoe.carve.Carver;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import dev.cmoe.model.eval.Perplexity;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code cmoe demo}: the main job end to end on the shipped model — carve it (S2A2E16, once),
 * serve the carved model on loopback, stream one generation through the gRPC client, and compare
 * test perplexity dense vs carved.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Carve models/brown-llama to S2A2E16 (once), serve it on 127.0.0.1, stream a generation"
                + " through the gRPC client, and print test perplexity dense vs carved.")
public final class DemoCommand implements Callable<Integer> {
    @Option(names = "--model", description = "Dense model (default: models/brown-llama of this checkout).")
    Path model;

    @Option(names = "--carved", description = "Where the carved model is kept (default: ~/.cache/cmoe/models/"
            + "brown-llama-S2A2E16).")
    Path carved;

    @Option(names = "--recarve", description = "Carve again even if the carved model exists.")
    boolean recarve;

    @Option(names = "--prompt", defaultValue = "The jury said", description = "Prompt (default: ${DEFAULT-VALUE}).")
    String prompt;

    @Option(names = "--max-new-tokens", defaultValue = "48", description = "Tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxNewTokens;

    @Override
    public Integer call() throws Exception {
        Path dense = model != null ? model : Paths.shippedModel();
        Path moe = carved != null ? carved : BrownCorpus.defaultDataDir().resolveSibling("models")
                .resolve("brown-llama-S2A2E16");
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        Path data = BrownCorpus.defaultDataDir();
        BrownCorpus.fetch(data);

        if (recarve || !Files.exists(moe.resolve("config.json"))) {
            out.println("== carving " + dense + " -> " + moe + " (S2A2E16: 2 shared + 2 of 14 routed experts, 25% of"
                    + " the FFN active)");
            Carver.carve(dense, BrownCorpus.splitFile(data, Split.TRAIN), moe,
                    CarveOptions.of(2, 2, 16).withBalance(10, 1e-3).withForce(true), CarveListener.progressBars());
        } else {
            out.println("== using the carved model in " + moe + " (--recarve to carve again)");
        }

        out.println("== serving " + moe + " on 127.0.0.1 and streaming through the gRPC client");
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--model", moe.toString(), "--host", "127.0.0.1", "--port", "0");
        try (ServeCommand.Running running = serve.start()) {
            ClientCommand client = new ClientCommand();
            new CommandLine(client).parseArgs("--server", "127.0.0.1:" + running.port(), "--max-new-tokens",
                    Integer.toString(maxNewTokens), "--temperature", "0.7", "--top-k", "40", "--seed", "7", prompt);
            out.print(prompt);
            int rc = client.call();
            if (rc != 0) {
                return rc;
            }
        }

        out.println("== test perplexity (corpus test split, windows of 256 tokens)");
        String test = Files.readString(BrownCorpus.splitFile(data, Split.TEST), StandardCharsets.UTF_8);
        double densePpl = perplexity(dense, test);
        double moePpl = perplexity(moe, test);
        out.printf(Locale.ROOT, "dense  %-60s PPL %8.2f%ncarved %-60s PPL %8.2f (%.2fx)%n", dense, densePpl, moe,
                moePpl, moePpl / densePpl);
        return 0;
    }

    private static double perplexity(Path dir, String text) {
        try (ModelDir md = ModelDir.open(dir)) {
            int seqlen = Math.min(256, md.config().contextLength());
            int[] tokens = md.tokenizer().encodeIds(text, false);
            try (ProgressBar bar = Progress.bar("PPL " + dir.getFileName(), tokens.length / seqlen, "win")) {
                return Perplexity.evaluate(md.model(), tokens, seqlen, 8, bar::stepTo).perplexity();
            }
        }
    }
}
