package dev.cmoe.deploy.cli;

import dev.cmoe.deploy.bench.DispatchBench;
import dev.cmoe.deploy.bench.DispatchWorker;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.safetensors.DType;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code cmoe bench-dispatch}: the floor of expert parallelism, a MoE layer's round trip to
 * worker JVMs on loopback with no-op experts, beside a raw Artery ping of the same payload, with
 * its breakdown. Prints a table of p50/p90.
 */
@Command(name = "bench-dispatch", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Per-layer dispatch round trip at batch 1 to worker JVMs on loopback (no-op experts), beside a"
                + " raw Artery ping of the same payload, with its breakdown (p50/p90).")
public final class BenchDispatchCommand implements Callable<Integer> {
    @Option(names = "--model", description = "A carved model: its layer 0's router, shared expert and shape"
            + " (default: the demo's ~/.cache/cmoe/models/brown-llama-S2A2E16).")
    Path model;

    @Mixin
    DtypeOption dtype;

    @Option(names = "--workers", defaultValue = "2", description = "Worker JVMs (default: ${DEFAULT-VALUE}).")
    int workers;

    @Option(names = "--iterations", defaultValue = "2000", description = "Timed iterations (default:"
            + " ${DEFAULT-VALUE}).")
    int iterations;

    @Option(names = "--warmup", defaultValue = "1000", description = "Untimed iterations first (default:"
            + " ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--serve-worker", hidden = true, description = "Internal: run as worker NAME of a bench.")
    String serveWorker;

    @Option(names = "--wire-dtype", hidden = true)
    String wireDtype;

    @Option(names = "--hidden", hidden = true)
    int hidden;

    @Option(names = "--experts", split = ",", hidden = true)
    List<Integer> experts;

    @Override
    public Integer call() throws Exception {
        if (serveWorker != null) {
            DispatchWorker.run(serveWorker, hidden, DType.valueOf(wireDtype), experts, System.in, System.out);
            return 0;
        }
        if (iterations < 1 || warmup < 0) {
            throw new IllegalArgumentException("--iterations must be ≥ 1 and --warmup ≥ 0, got " + iterations + " and "
                    + warmup);
        }
        Path dir = model != null ? model
                : BrownCorpus.defaultDataDir().resolveSibling("models").resolve("brown-llama-S2A2E16");
        DispatchBench.run(new DispatchBench.Options(dir, dtype.dtype, workers, iterations, warmup),
                new PrintStream(System.out, true, StandardCharsets.UTF_8));
        return 0;
    }
}
