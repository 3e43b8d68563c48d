package dev.cmoe.deploy.cli;

import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.eval.Perplexity;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code cmoe eval-ppl}: perplexity of a model on a text file, as the CMoE paper measures it. */
@Command(name = "eval-ppl", mixinStandardHelpOptions = true,
        description = "Perplexity over non-overlapping windows of --seqlen tokens of a UTF-8 text file.")
public final class EvalPplCommand implements Callable<Integer> {
    /** The paper's window; shorter where the model's context is. */
    static final int DEFAULT_MAX_SEQLEN = 512;

    @Option(names = "--model", required = true, description = "Model directory (config.json, *.safetensors, tokenizer.json).")
    Path model;

    @Option(names = "--text", required = true, description = "UTF-8 text to score, e.g. the test split.")
    Path text;

    @Option(names = "--seqlen", defaultValue = "0",
            description = "Window length in tokens (default: the model's context, at most 512).")
    int seqlen;

    @Mixin
    DtypeOption dtype;

    @Option(names = "--batch", defaultValue = "4", description = "Windows per forward step (default: ${DEFAULT-VALUE}).")
    int batch;

    @Override
    public Integer call() throws Exception {
        if (!Files.isRegularFile(text)) {
            throw new IllegalArgumentException("text file " + text + " does not exist");
        }
        if (batch <= 0) {
            throw new IllegalArgumentException("--batch must be positive, got " + batch);
        }
        String content = Files.readString(text, StandardCharsets.UTF_8);
        if (seqlen < 0) {
            throw new IllegalArgumentException("--seqlen must be positive (or 0 for the default), got " + seqlen);
        }
        try (ModelDir dir = ModelDir.open(model, dtype.apply(LoadSpec.full()))) {
            int context = dir.config().contextLength();
            if (seqlen > context) {
                throw new IllegalArgumentException("--seqlen " + seqlen + " exceeds the model's context of " + context
                        + " tokens");
            }
            int seqlen = this.seqlen == 0 ? Math.min(DEFAULT_MAX_SEQLEN, context) : this.seqlen;
            int[] tokens = dir.tokenizer().encodeIds(content, false);
            int windows = tokens.length / seqlen;
            Perplexity.Result r;
            try (ProgressBar bar = Progress.bar("eval-ppl", windows, "win")) {
                r = Perplexity.evaluate(dir.model(), tokens, seqlen, batch, bar::stepTo);
            }
            System.out.printf(Locale.ROOT, "model %s%ntext %s%nwindows %d x %d tokens, %d tokens evaluated, %.1f s%n"
                            + "PPL %.4f%n",
                    model, text, r.windows(), r.seqlen(), r.tokens(), r.seconds(), r.perplexity());
        }
        return 0;
    }
}
