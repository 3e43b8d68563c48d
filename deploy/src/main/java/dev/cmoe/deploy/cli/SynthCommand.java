package dev.cmoe.deploy.cli;

import com.google.gson.JsonObject;
import dev.cmoe.deploy.bench.SyntheticCheckpoint;
import dev.cmoe.deploy.bench.SyntheticModel;
import dev.cmoe.deploy.bench.SyntheticShapes;
import dev.cmoe.model.safetensors.DType;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code cmoe synth}: a random-weight checkpoint of a real model's shape in the Hugging Face
 * layout, so users test their hardware and the benchmarks run real sizes without any download.
 */
@Command(name = "synth", mixinStandardHelpOptions = true,
        description = {"Writes a random-weight checkpoint of a named real shape (config.json, sharded safetensors "
                + "with an index, the shipped model's tokenizer); --carved SsAaEe writes it already carved "
                + "(random router) for serving benchmarks.",
            "Shapes: llama-2-7b, llama-3.1-8b, mistral-7b, qwen2.5-7b, qwen3-8b."})
public final class SynthCommand implements Callable<Integer> {
    private static final Pattern CARVING = Pattern.compile("S(\\d+)A(\\d+)E(\\d+)");

    @Option(names = "--shape", required = true, description = "Shape name (see above).")
    String shape;

    @Option(names = "--layers", defaultValue = "0", description = "Decoder layers; 0 = the shape's own.")
    int layers;

    @Option(names = "--dtype", defaultValue = "bf16", description = "Stored dtype: f32, f16 or bf16 (default: ${DEFAULT-VALUE}).")
    String dtype;

    @Option(names = "--carved", description = "Write a carved model instead, e.g. S2A2E16 (N_s, N_k, N).")
    String carved;

    @Option(names = "--shard-size", defaultValue = "4GiB", description = "Most bytes per safetensors shard "
            + "(default: ${DEFAULT-VALUE}; 512MiB, 2G, bytes).")
    String shardSize;

    @Option(names = "--seed", defaultValue = "0", description = "Seed of the random weights (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--out", required = true, description = "Output directory (written atomically).")
    Path out;

    @Option(names = "--force", description = "Replace an existing output directory.")
    boolean force;

    @Override
    public Integer call() {
        JsonObject config = SyntheticShapes.config(shape, layers);
        DType stored = switch (dtype.toLowerCase(Locale.ROOT)) {
            case "f32", "float32" -> DType.F32;
            case "f16", "float16" -> DType.F16;
            case "bf16", "bfloat16" -> DType.BF16;
            default -> throw new IllegalArgumentException("--dtype must be f32, f16 or bf16, got '" + dtype + "'");
        };
        Optional<dev.cmoe.model.moe.MoeConfig> moe = Optional.empty();
        if (carved != null) {
            Matcher m = CARVING.matcher(carved.toUpperCase(Locale.ROOT));
            if (!m.matches()) {
                throw new IllegalArgumentException("--carved must look like S2A2E16, got '" + carved + "'");
            }
            moe = Optional.of(SyntheticModel.moe(config.get("intermediate_size").getAsInt(),
                    Integer.parseInt(m.group(3)), Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2))));
        }
        long shard = dev.cmoe.experts.placement.Bytes.parse(shardSize);
        long start = System.nanoTime();
        SyntheticCheckpoint.write(config, moe, new SyntheticModel(seed), Paths.shippedModel(), out, stored, shard,
                force);
        System.err.printf(Locale.ROOT, "cmoe synth: %s (%d layers, %s%s) in %s, %.1f s%n", shape,
                config.get("num_hidden_layers").getAsInt(), stored, carved == null ? "" : ", carved " + carved, out,
                (System.nanoTime() - start) / 1e9);
        return 0;
    }
}
