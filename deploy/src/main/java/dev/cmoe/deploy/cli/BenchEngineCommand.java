package dev.cmoe.deploy.cli;

import dev.cmoe.carve.CarveListener;
import dev.cmoe.carve.CarveOptions;
import dev.cmoe.carve.CarveReport;
import dev.cmoe.carve.Carver;
import dev.cmoe.deploy.bench.EngineBench;
import dev.cmoe.deploy.bench.PerExpertMoe;
import dev.cmoe.deploy.bench.SyntheticModel;
import dev.cmoe.model.ModelDir;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.llama.DecoderWeights;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.safetensors.Checkpoint;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code cmoe bench-engine}: decode throughput and FFN time of dense vs carved FFNs on the same
 * engine, for the shipped model and for a LLaMA-2-7B-shaped model with random weights, and the
 * carve time of the shipped model. Prints tables; the figures in docs/PERFORMANCE.md come from it.
 */
@Command(name = "bench-engine", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Decode throughput and FFN time per token, dense vs carved on one engine (shipped model and a"
                + " synthetic LLaMA-2-7B-shaped one), and carve time. Run it on an otherwise idle machine."})
public final class BenchEngineCommand implements Callable<Integer> {
    @Option(names = "--model", description = "Dense model (default: models/brown-llama).")
    Path model;

    @Option(names = "--carved", description = "Its carving (default: ~/.cache/cmoe/models/brown-llama-S2A2E16, made"
            + " by `cmoe demo`).")
    Path carved;

    @Option(names = "--skip-shipped", description = "Skip the shipped model.")
    boolean skipShipped;

    @Option(names = "--skip-synthetic", description = "Skip the synthetic 7B-shaped model.")
    boolean skipSynthetic;

    @Option(names = "--batch", split = ",", defaultValue = "1,8,32", description = "Sequences per decode step"
            + " (default: ${DEFAULT-VALUE}).")
    int[] batches;

    @Option(names = "--steps", defaultValue = "16", description = "Timed decode steps per measurement (default:"
            + " ${DEFAULT-VALUE}).")
    int steps;

    @Option(names = "--prompt", defaultValue = "32", description = "Prompt tokens prefilled per sequence (default:"
            + " ${DEFAULT-VALUE}).")
    int prompt;

    @Option(names = "--repeats", defaultValue = "3", description = "Repeats, variants alternating in each (default:"
            + " ${DEFAULT-VALUE}).")
    int repeats;

    @Option(names = "--hidden", defaultValue = "4096", description = "Synthetic d (default: ${DEFAULT-VALUE}).")
    int hidden;

    @Option(names = "--intermediate", defaultValue = "11008", description = "Synthetic d_h (default: ${DEFAULT-VALUE}).")
    int intermediate;

    @Option(names = "--layers", defaultValue = "2", description = "Synthetic layers (default: ${DEFAULT-VALUE}).")
    int layers;

    @Option(names = "--heads", defaultValue = "32", description = "Synthetic attention heads (and KV heads)"
            + " (default: ${DEFAULT-VALUE}).")
    int heads;

    @Option(names = "--vocab", defaultValue = "1024", description = "Synthetic vocabulary (default: ${DEFAULT-VALUE}).")
    int vocab;

    @Option(names = "--experts", defaultValue = "16", description = "Synthetic carving: N (default: ${DEFAULT-VALUE}).")
    int experts;

    @Option(names = "--shared", defaultValue = "2", description = "Synthetic carving: N_s (default: ${DEFAULT-VALUE}).")
    int shared;

    @Option(names = "--active", split = ",", defaultValue = "2,10", description = "Synthetic carving: N_k values;"
            + " with N_s 2 of 16, 2 is 25%% and 10 is 75%% of the FFN active (default: ${DEFAULT-VALUE}).")
    int[] active;

    @Option(names = "--ffn-iterations", defaultValue = "20", description = "FFN-only forwards per measurement"
            + " (default: ${DEFAULT-VALUE}).")
    int ffnIterations;

    @Option(names = "--per-expert", description = "Also run each carving the way the MoE layer ran before its experts"
            + " were grouped (one gather and SwiGLU per selected expert), its weights loaded a second time.")
    boolean perExpert;

    @Option(names = "--java-ops", description = "Also run each variant as the Java operations that the layer script"
            + " replaces (one engine call per operation, the path before the script), interleaved with the others.")
    boolean javaOps;

    @Option(names = "--threads", description = "PyTorch intra-op threads (default: the engine's, one per core). On a"
            + " machine shared with other jobs, 1 avoids OpenMP threads spinning against each other.")
    Integer threads;

    @Mixin
    DtypeOption dtype;

    @Option(names = "--compare-dtypes", split = ",", paramLabel = "DTYPE", description = "Instead of dense vs carved:"
            + " dense decode of the synthetic model held in each of these dtypes (e.g. f32,bf16), steps interleaved,"
            + " with the weight bytes read per second.")
    List<String> compareDtypes;

    @Option(names = "--compare-threads", split = ",", paramLabel = "N", description = "Instead of dense vs carved:"
            + " dense decode of the shipped and the synthetic model with each of these intra-op thread counts (e.g."
            + " 1,2), set before each step so the counts take turns step by step.")
    int[] compareThreads;

    @Option(names = "--carve", description = "Also carve the shipped model (S2A2E16, into a temporary directory)"
            + " and report the time per layer and phase.")
    boolean carve;

    @Override
    public Integer call() throws Exception {
        if (threads != null) {
            // read once, when the engine starts: this command has not touched it yet
            System.setProperty("ai.djl.pytorch.num_threads", threads.toString());
        }
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        out.printf(Locale.ROOT, "cmoe bench-engine: %d cores, %s engine threads, load average %.2f at start; batches %s,"
                        + " %d timed steps, %d repeats (variants take turns step by step)%n",
                Runtime.getRuntime().availableProcessors(), threads == null ? "default" : threads.toString(),
                ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage(), Arrays.toString(batches), steps,
                repeats);
        if (compareDtypes != null) {
            dtypes(out);
            return 0;
        }
        if (compareThreads != null) {
            threads(out);
            return 0;
        }
        if (!skipShipped) {
            shipped(out);
        }
        if (!skipSynthetic) {
            synthetic(out);
        }
        if (carve) {
            carve(out);
        }
        out.printf(Locale.ROOT, "load average at the end %.2f%n",
                ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage());
        return 0;
    }

    private void shipped(PrintStream out) throws Exception {
        Path dense = model != null ? model : Paths.shippedModel();
        Path moeDir = carved != null ? carved : BrownCorpus.defaultDataDir().resolveSibling("models")
                .resolve("brown-llama-S2A2E16");
        if (!Files.exists(moeDir.resolve("config.json"))) {
            throw new IllegalArgumentException("no carved model at " + moeDir + ": run `./cmoe demo` once, or `cmoe"
                    + " carve` and pass --carved DIR");
        }
        ModelConfig carvedConfig = ModelConfig.load(moeDir);
        MoeConfig moe = MoeConfig.of(carvedConfig).orElseThrow(() -> new IllegalArgumentException(
                moeDir + " has no cmoe block: not a carved model"));
        try (ModelDir dir = ModelDir.open(dense, dtype.apply(LoadSpec.full())); Checkpoint ckpt = Checkpoint.open(moeDir)) {
            LlamaModel m = dir.model();
            ModelConfig c = m.config();
            List<FeedForward> denseFfns = ffns(m);
            List<FeedForward> moeFfns = new ArrayList<>();
            for (int l = 0; l < c.numLayers(); l++) {
                moeFfns.add(MoeFeedForward.load(m.manager(), TensorSource.of(ckpt), l, carvedConfig, moe, true,
                        m.kernels()));
            }
            String name = "S" + moe.shared() + "A" + moe.active() + "E" + moe.experts() + " " + pct(moe);
            String label = String.format(Locale.ROOT, "%s (%d layers, d %d, d_h %d)", dense.getFileName(),
                    c.numLayers(), c.hiddenSize(), c.intermediateSize());
            List<EngineBench.Variant> variants = new ArrayList<>(List.of(new EngineBench.Variant("dense", denseFfns),
                    new EngineBench.Variant(name, moeFfns)));
            if (perExpert) {
                variants.add(perExpert(name, m.manager(), TensorSource.of(ckpt), c.hiddenSize(), moe, m.kernels(),
                        moeFfns));
            }
            run(out, label, m, c.hiddenSize(), withJavaOps(variants));
            EngineBench.install(m, new EngineBench.Variant("dense", denseFfns));
            variants.subList(1, variants.size()).forEach(v -> v.ffns().forEach(FeedForward::close));
        }
    }

    private void synthetic(PrintStream out) throws Exception {
        ModelConfig c = SyntheticModel.config(hidden, intermediate, layers, heads, heads, vocab,
                prompt + steps + 8);
        SyntheticModel source = new SyntheticModel(42);
        out.printf(Locale.ROOT, "%nbuilding the synthetic model (d %d, d_h %d, %d layers, %d heads, vocab %d) and its"
                + " carvings %s of %d experts, N_s %d ...%n", hidden, intermediate, layers, heads, vocab,
                Arrays.toString(active), experts, shared);
        WeightKernels kernels = WeightKernels.of(LoadSpec.parseDtype(dtype.dtype).orElse(DType.F32));
        try (LlamaModel m = LlamaModel.create(c, DecoderWeights.frozen(NDManager.newBaseManager(), source, kernels),
                LlamaModel.denseFeedForwards(c))) {
            List<EngineBench.Variant> variants = new ArrayList<>();
            List<FeedForward> denseFfns = ffns(m);
            variants.add(new EngineBench.Variant("dense", denseFfns));
            for (int k : active) {
                MoeConfig moe = SyntheticModel.moe(intermediate, experts, shared, k);
                List<FeedForward> f = new ArrayList<>();
                for (int l = 0; l < layers; l++) {
                    f.add(MoeFeedForward.load(m.manager(), source, l, c, moe, true, kernels));
                }
                String name = "S" + shared + "A" + k + "E" + experts + " " + pct(moe);
                variants.add(new EngineBench.Variant(name, f));
                if (perExpert) {
                    variants.add(perExpert(name, m.manager(), source, hidden, moe, kernels, f));
                }
            }
            String label = String.format(Locale.ROOT, "synthetic 7B-shaped (%d layers, d %d, d_h %d)", layers, hidden,
                    intermediate);
            run(out, label, m, hidden, withJavaOps(variants));
            EngineBench.install(m, variants.getFirst());
            for (EngineBench.Variant v : variants.subList(1, variants.size())) {
                v.ffns().forEach(FeedForward::close);
            }
        }
    }

    /** Dense decode of one synthetic model held in each dtype of {@code --compare-dtypes}, interleaved. */
    private void dtypes(PrintStream out) {
        ModelConfig c = SyntheticModel.config(hidden, intermediate, layers, heads, heads, vocab, prompt + steps + 8);
        SyntheticModel source = new SyntheticModel(42);
        long params = 0;
        for (long[] shape : dev.cmoe.model.arch.Layout.dense(c).values()) {
            params += Arrays.stream(shape).reduce(1, Math::multiplyExact);
        }
        List<EngineBench.Variant> variants = new ArrayList<>();
        List<DType> kinds = new ArrayList<>();
        try {
            for (String name : compareDtypes) {
                DType d = LoadSpec.parseDtype(name).orElseThrow(() -> new IllegalArgumentException(
                        "--compare-dtypes takes bf16, f16 or f32, not auto"));
                kinds.add(d);
                variants.add(EngineBench.Variant.of(d.shortName(), LlamaModel.create(c,
                        DecoderWeights.frozen(NDManager.newBaseManager(), source, WeightKernels.of(d)),
                        LlamaModel.denseFeedForwards(c))));
            }
            List<EngineBench.Decode> decode;
            try (ProgressBar bar = Progress.bar("decode", (long) batches.length * repeats, "run")) {
                decode = EngineBench.decode(variants.getFirst().model(), variants, batches, prompt, steps, repeats,
                        bar::step);
            }
            String base = variants.getFirst().name();
            out.printf(Locale.ROOT, "%n== dense decode by dtype, synthetic (%d layers, d %d, d_h %d, vocab %d, %.2fG"
                    + " parameters): tokens/s (median of %d), weight GB/s = bytes × steps/s, ratio to %s [min-max]%n",
                    layers, hidden, intermediate, vocab, params / 1e9, repeats, base);
            StringBuilder head = new StringBuilder(String.format(Locale.ROOT, "%6s", "batch"));
            for (EngineBench.Variant v : variants) {
                head.append(String.format(Locale.ROOT, " %10s %9s %18s", v.name() + " tok/s", "GB/s", "ratio"));
            }
            out.println(head);
            for (EngineBench.Decode r : decode) {
                StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "%6d", r.batch()));
                for (int i = 0; i < variants.size(); i++) {
                    String n = variants.get(i).name();
                    double tps = r.median(n);
                    double[] range = r.range(n, base);
                    row.append(String.format(Locale.ROOT, " %10.2f %9.1f %7.2fx [%.2f-%.2f]", tps,
                            params * kinds.get(i).byteSize() * (tps / r.batch()) / 1e9, r.ratio(n, base), range[0],
                            range[1]));
                }
                out.println(row);
            }
        } finally {
            variants.forEach(v -> v.model().close());
        }
    }

    /** Dense decode with each of {@code --compare-threads}, steps interleaved, on the shipped and synthetic models. */
    private void threads(PrintStream out) throws Exception {
        if (!skipShipped) {
            try (ModelDir dir = ModelDir.open(model != null ? model : Paths.shippedModel(),
                    dtype.apply(LoadSpec.full()))) {
                threadTable(out, "shipped " + dir.model().config().numLayers() + "-layer model", dir.model());
            }
        }
        if (!skipSynthetic) {
            ModelConfig c = SyntheticModel.config(hidden, intermediate, layers, heads, heads, vocab, prompt + steps + 8);
            WeightKernels kernels = WeightKernels.of(LoadSpec.parseDtype(dtype.dtype).orElse(DType.F32));
            try (LlamaModel m = LlamaModel.create(c, DecoderWeights.frozen(NDManager.newBaseManager(),
                    new SyntheticModel(42), kernels), LlamaModel.denseFeedForwards(c))) {
                threadTable(out, String.format(Locale.ROOT, "synthetic %d layers, d %d, d_h %d, %s", layers, hidden,
                        intermediate, kernels.dtype().shortName()), m);
            }
        }
    }

    private void threadTable(PrintStream out, String label, LlamaModel m) {
        List<EngineBench.Variant> variants = new ArrayList<>();
        for (int t : compareThreads) {
            if (t < 1) {
                throw new IllegalArgumentException("--compare-threads takes positive thread counts, not " + t);
            }
            variants.add(EngineBench.Variant.withThreads(t + " thread" + (t == 1 ? "" : "s"), m, t));
        }
        List<EngineBench.Decode> decode;
        try (ProgressBar bar = Progress.bar("decode", (long) batches.length * repeats, "run")) {
            decode = EngineBench.decode(m, variants, batches, prompt, steps, repeats, bar::step);
        }
        String base = variants.getFirst().name();
        out.printf(Locale.ROOT, "%n== dense decode by intra-op threads, %s: tokens/s (median of %d), ratio to %s"
                + " [min-max]%n", label, repeats, base);
        StringBuilder head = new StringBuilder(String.format(Locale.ROOT, "%6s", "batch"));
        variants.forEach(v -> head.append(String.format(Locale.ROOT, " %14s %18s", v.name(), "ratio")));
        out.println(head);
        for (EngineBench.Decode r : decode) {
            StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "%6d", r.batch()));
            for (EngineBench.Variant v : variants) {
                double[] range = r.range(v.name(), base);
                row.append(String.format(Locale.ROOT, " %14.1f %7.2fx [%.2f-%.2f]", r.median(v.name()),
                        r.ratio(v.name(), base), range[0], range[1]));
            }
            out.println(row);
        }
    }

    private void run(PrintStream out, String label, LlamaModel m, int d, List<EngineBench.Variant> variants) {
        List<EngineBench.Decode> decode;
        try (ProgressBar bar = Progress.bar("decode", (long) batches.length * repeats, "run")) {
            decode = EngineBench.decode(m, variants, batches, prompt, steps, repeats, bar::step);
        }
        String base = variants.getFirst().name();
        out.printf(Locale.ROOT, "%n== decode throughput, %s: tokens/s (median of %d), carved/dense = median of the"
                + " per-repeat ratios [min-max]%n", label, repeats);
        StringBuilder head = new StringBuilder(String.format(Locale.ROOT, "%6s %10s", "batch", base));
        for (EngineBench.Variant v : variants.subList(1, variants.size())) {
            head.append(String.format(Locale.ROOT, " %16s %22s", v.name(), "carved/dense"));
        }
        out.println(head);
        for (EngineBench.Decode r : decode) {
            StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "%6d %10.1f", r.batch(), r.median(base)));
            for (EngineBench.Variant v : variants.subList(1, variants.size())) {
                double[] range = r.range(v.name(), base);
                row.append(String.format(Locale.ROOT, " %16.1f %8.2fx [%.2f-%.2f]", r.median(v.name()),
                        r.ratio(v.name(), base), range[0], range[1]));
            }
            out.println(row);
        }
        for (int i = 1; i < variants.size(); i++) {
            String name = variants.get(i).name();
            if (name.endsWith(" per-expert")) {
                String grouped = variants.get(i - 1).name();
                StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "grouped / per-expert, %s:", grouped));
                for (EngineBench.Decode r : decode) {
                    double[] range = r.range(grouped, name);
                    row.append(String.format(Locale.ROOT, "  batch %d %.2fx [%.2f-%.2f]", r.batch(),
                            r.ratio(grouped, name), range[0], range[1]));
                }
                out.println(row);
            }
        }
        // the FFN blocks' own Java path; a Java-ops twin holds the same blocks
        List<EngineBench.Variant> blocks = variants.stream().filter(EngineBench.Variant::scripted).toList();
        if (m.kernels().dtype() == DType.F32) {
            Map<String, long[]> calls = EngineBench.engineCalls(blocks, d, batches);
            out.printf(Locale.ROOT, "%n== engine calls per layer, FFN (layer 0) run as Java operations, %s: calls of one"
                    + " forward, counted (a scripted layer runs each block as one call of the layer script)%n", label);
            StringBuilder h = new StringBuilder(String.format(Locale.ROOT, "%6s", "batch"));
            blocks.forEach(v -> h.append(String.format(Locale.ROOT, " %22s", v.name())));
            out.println(h);
            for (int b = 0; b < batches.length; b++) {
                StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "%6d", batches[b]));
                for (EngineBench.Variant v : blocks) {
                    row.append(String.format(Locale.ROOT, " %22d", calls.get(v.name())[b]));
                }
                out.println(row);
            }
        } else {
            out.printf(Locale.ROOT, "%n(engine calls are counted on float32 models only: %s holds %s)%n", label,
                    m.kernels().dtype().shortName());
        }
        out.printf(Locale.ROOT, "%n== FFN only (layer 0), %s: microseconds per token (median of %d), MoE/dense time%n",
                label, repeats);
        StringBuilder ffnHead = new StringBuilder(String.format(Locale.ROOT, "%6s %10s", "batch", base));
        blocks.subList(1, blocks.size()).forEach(v -> ffnHead.append(String.format(Locale.ROOT, " %16s %22s", v.name(),
                "  MoE/dense")));
        out.println(ffnHead);
        for (int batch : batches) {
            Map<String, double[]> us = EngineBench.ffnMicrosPerToken(blocks, d, batch, ffnIterations, repeats);
            StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "%6d %10.1f", batch,
                    EngineBench.median(us.get(base))));
            for (EngineBench.Variant v : blocks.subList(1, blocks.size())) {
                double[] ratio = new double[repeats];
                for (int i = 0; i < repeats; i++) {
                    ratio[i] = us.get(v.name())[i] / us.get(base)[i];
                }
                row.append(String.format(Locale.ROOT, " %16.1f %8.2fx %13s", EngineBench.median(us.get(v.name())), EngineBench.median(ratio),
                        ""));
            }
            out.println(row);
        }
    }

    private void carve(PrintStream out) throws Exception {
        Path dense = model != null ? model : Paths.shippedModel();
        Path data = BrownCorpus.defaultDataDir();
        BrownCorpus.fetch(data);
        Path tmp = Files.createTempDirectory("cmoe-bench-carve");
        try {
            long t = System.nanoTime();
            CarveReport report = Carver.carve(dense, BrownCorpus.splitFile(data, Split.TRAIN), tmp.resolve("carved"),
                    CarveOptions.of(2, 2, 16).withBalance(10, 1e-3).withForce(true), CarveListener.progressBars());
            double total = (System.nanoTime() - t) / 1e9;
            out.printf(Locale.ROOT, "%n== carve %s to S2A2E16 (10 balancing steps): %.1f s in all%n", dense, total);
            out.printf(Locale.ROOT, "%6s %9s %9s %9s %9s %9s %9s%n", "layer", "capture", "markers", "cluster", "router",
                    "balance", "total");
            for (CarveReport.Layer l : report.layers()) {
                CarveReport.LayerTimings s = l.seconds();
                out.printf(Locale.ROOT, "%6d %8.2fs %8.2fs %8.2fs %8.2fs %8.2fs %8.2fs%n", l.layer(), s.capture(),
                        s.markers(), s.cluster(), s.router(), s.balance(), s.total());
            }
        } finally {
            try (var walk = Files.walk(tmp)) {
                walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    /** The variant that runs {@code grouped}'s layers the previous way, on a second copy of their experts. */
    private static EngineBench.Variant perExpert(String name, NDManager manager, TensorSource source, int hidden,
                                                 MoeConfig moe, WeightKernels kernels, List<FeedForward> grouped) {
        List<FeedForward> f = new ArrayList<>();
        for (int l = 0; l < grouped.size(); l++) {
            f.add(PerExpertMoe.load(manager, source, l, hidden, moe, kernels, (MoeFeedForward) grouped.get(l)));
        }
        return new EngineBench.Variant(name.substring(0, name.indexOf(' ')) + " per-expert", f);
    }

    /** {@code variants}, each followed by its Java-operations twin when {@code --java-ops} asks for it. */
    private List<EngineBench.Variant> withJavaOps(List<EngineBench.Variant> variants) {
        if (!javaOps) {
            return variants;
        }
        List<EngineBench.Variant> out = new ArrayList<>();
        for (EngineBench.Variant v : variants) {
            out.add(v);
            out.add(v.javaOps());
        }
        return out;
    }

    private static List<FeedForward> ffns(LlamaModel m) {
        List<FeedForward> f = new ArrayList<>();
        for (int l = 0; l < m.config().numLayers(); l++) {
            f.add(m.feedForward(l));
        }
        return f;
    }

    private static String pct(MoeConfig moe) {
        return String.format(Locale.ROOT, "(%d%%)", Math.round(100.0 * (moe.shared() + moe.active()) / moe.experts()));
    }
}
