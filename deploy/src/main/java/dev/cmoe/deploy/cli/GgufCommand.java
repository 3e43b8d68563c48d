package dev.cmoe.deploy.cli;

import dev.cmoe.deploy.gguf.GgufConverter;
import dev.cmoe.deploy.gguf.GgufType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code cmoe gguf}: a dense checkpoint as GGUF, so llama.cpp can be benchmarked on the very same weights. */
@Command(name = "gguf", mixinStandardHelpOptions = true,
        description = {"Converts a dense model directory (config.json, safetensors, byte-level BPE tokenizer.json;"
                + " llama, mistral, qwen2, qwen3) to one GGUF file for llama.cpp, matrices in f32, f16 or bf16."})
public final class GgufCommand implements Callable<Integer> {
    @Parameters(index = "0", description = "Model directory.")
    Path model;

    @Option(names = "--out", required = true, description = "GGUF file to write (written to a temporary file and"
            + " renamed).")
    Path out;

    @Option(names = "--type", defaultValue = "f32", description = "Matrix type: f32, f16 or bf16; norms and biases"
            + " stay f32 (default: ${DEFAULT-VALUE}).")
    String type;

    @Option(names = "--force", description = "Replace an existing output file.")
    boolean force;

    @Override
    public Integer call() {
        GgufType t = GgufType.parse(type);
        if (Files.exists(out) && !force) {
            throw new IllegalArgumentException(out + " exists; pass --force to replace it");
        }
        long start = System.nanoTime();
        GgufConverter.Result r = GgufConverter.convert(model, out, t, name -> {
        }, warning -> System.err.println("cmoe gguf: warning: " + warning));
        System.err.printf(Locale.ROOT, "cmoe gguf: %s -> %s (%s, %s, %d tensors, %.1f MB) in %.1f s%n", model, out,
                r.architecture(), t.name().toLowerCase(Locale.ROOT), r.tensors(), r.bytes() / 1e6,
                (System.nanoTime() - start) / 1e9);
        return 0;
    }
}
