package dev.cmoe.deploy.cli;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.deploy.bench.EngineBench;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.io.AtomicFile;
import dev.cmoe.model.sample.SamplingParams;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code cmoe bench-decode}: one model's batch-1 prefill and decode times and greedy ids as a JSON
 * record, measured the way a user's generation runs (the {@code cmoe generate} loop), so another
 * engine given the same prompt ids can be timed and checked against it (bench/llamacpp).
 */
@Command(name = "bench-decode", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Batch-1 greedy generation timing of one model: time to the first token after a prompt"
                + " (prefill) and decode tokens/s after it, with the greedy ids, as JSON for side-by-side runs"
                + " with other engines (bench/llamacpp)."})
public final class BenchDecodeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Model directory.")
    Path model;

    @Option(names = "--text", required = true, description = "Prompt text; its ids (with BOS) are repeated or cut to"
            + " --prompt tokens.")
    String text;

    @Option(names = "--prompt", defaultValue = "128", description = "Prompt tokens (default: ${DEFAULT-VALUE}).")
    int prompt;

    @Option(names = "--tokens", defaultValue = "64", description = "Tokens generated per repeat (default:"
            + " ${DEFAULT-VALUE}).")
    int tokens;

    @Option(names = "--repeats", defaultValue = "3", description = "Timed generations after one untimed"
            + " (default: ${DEFAULT-VALUE}).")
    int repeats;

    @Option(names = "--threads", description = "PyTorch intra-op threads (default: the engine's).")
    Integer threads;

    @Mixin
    DtypeOption dtype;

    @Option(names = "--json", required = true, description = "Where to write the record.")
    Path json;

    @Override
    public Integer call() throws Exception {
        if (threads != null) {
            System.setProperty("ai.djl.pytorch.num_threads", threads.toString()); // read when the engine starts
        }
        if (prompt < 1 || tokens < 2 || repeats < 1) {
            throw new IllegalArgumentException("--prompt must be ≥ 1, --tokens ≥ 2 and --repeats ≥ 1");
        }
        try (ModelDir dir = ModelDir.open(model, dtype.apply(LoadSpec.full()))) {
            int[] ids = promptIds(dir.tokenizer().encodeIds(text, true), prompt);
            Run first = run(dir, ids); // untimed: warms the engine's kernels and allocator
            double[] prefillMs = new double[repeats];
            double[] decodeTps = new double[repeats];
            double[] copyGbps = new double[repeats];
            try (NDManager m = NDManager.newBaseManager()) {
                NDArray block = m.ones(new Shape(COPY_FLOATS));
                NDArray into = m.zeros(new Shape(COPY_FLOATS));
                for (int r = 0; r < repeats; r++) {
                    Run run = run(dir, ids);
                    if (!Arrays.equals(run.ids, first.ids)) {
                        throw new IllegalStateException("greedy ids differ between repeats: "
                                + Arrays.toString(first.ids) + " then " + Arrays.toString(run.ids));
                    }
                    prefillMs[r] = run.prefillMs;
                    decodeTps[r] = run.decodeTps;
                    copyGbps[r] = copyBandwidth(block, into);
                }
            }
            JsonObject o = new JsonObject();
            o.addProperty("engine", "cmoe");
            o.addProperty("model", model.toString());
            o.addProperty("threads", threads == null ? "default" : threads.toString());
            o.addProperty("load_average", ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage());
            o.add("text_ids", array(dir.tokenizer().encodeIds(text, false))); // for other engines' tokenizers
            o.add("prompt_ids", array(ids));
            o.add("greedy_ids", array(first.ids));
            o.add("prefill_ms", array(prefillMs));
            o.add("decode_tokens_per_s", array(decodeTps));
            o.add("copy_gb_per_s", array(copyGbps));
            long bytes = decodeBytes(dir);
            double[] fraction = new double[repeats];
            for (int r = 0; r < repeats; r++) {
                fraction[r] = bytes * decodeTps[r] / (copyGbps[r] * 1e9);
            }
            if (bytes > 0) {
                o.addProperty("weight_bytes_per_token", bytes);
                o.add("bandwidth_fraction", array(fraction));
            }
            AtomicFile.write(json, new GsonBuilder().setPrettyPrinting().create().toJson(o)
                    .getBytes(StandardCharsets.UTF_8));
            System.err.printf(Locale.ROOT, "cmoe bench-decode: prefill %d tokens %.1f ms, decode %.1f tokens/s"
                    + " (medians of %d)%s%n", ids.length, EngineBench.median(prefillMs), EngineBench.median(decodeTps), repeats,
                    bytes == 0 ? "" : String.format(Locale.ROOT, "; copy %.1f GB/s, weights %.1f MB per token read at"
                            + " %.0f%% of it", EngineBench.median(copyGbps), bytes / 1e6, 100 * EngineBench.median(fraction)));
        }
        return 0;
    }

    /** A 256 MiB block: far past the caches, as a decode step's weights are. */
    private static final long COPY_FLOATS = 64L << 20;

    /**
     * A STREAM-like copy with the engine's threads: bytes read plus bytes written per second,
     * the best of three copies of {@code block} into the same, already touched, {@code into}
     * (a fresh destination would time the kernel's page faults as well).
     */
    static double copyBandwidth(NDArray block, NDArray into) {
        double best = 0;
        NDIndex all = new NDIndex(":");
        for (int i = 0; i < 3; i++) {
            long t = System.nanoTime();
            into.set(all, block);
            best = Math.max(best, 2.0 * block.size() * Float.BYTES / ((System.nanoTime() - t) / 1e9) / 1e9);
        }
        return best;
    }

    /**
     * Weight bytes a dense model's decode step reads: every decoder layer's projections at their
     * dtype and norms, the final norm and the LM head (the embedding table's one row aside, unless
     * the head is the tied table). 0 for a carved model, whose step reads only what it routes to.
     */
    static long decodeBytes(ModelDir dir) {
        ModelConfig c = dir.config();
        if (MoeConfig.of(c).isPresent()) {
            return 0;
        }
        long w = dir.model().kernels().dtype().byteSize();
        long d = c.hiddenSize();
        long perLayer = w * (d * (c.qDim() + 2L * c.kvDim()) + (long) c.qDim() * d + 3L * d * c.intermediateSize())
                + Float.BYTES * 2L * d;
        return c.numLayers() * perLayer + w * (long) c.vocabSize() * d + Float.BYTES * d;
    }

    /** The first {@code n} ids of {@code ids} repeated as often as needed. */
    static int[] promptIds(int[] ids, int n) {
        if (ids.length == 0) {
            throw new IllegalArgumentException("--text encodes to no tokens");
        }
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = ids[i % ids.length];
        }
        return out;
    }

    private record Run(int[] ids, double prefillMs, double decodeTps) {
    }

    /** One greedy generation; prefill is the time to the first token, decode the rate of the ones after it. */
    private Run run(ModelDir dir, int[] ids) {
        long[] at = new long[tokens];
        int[] n = {0};
        long start = System.nanoTime();
        Generator.Result r = Generator.generate(dir.model(), ids, tokens, SamplingParams.greedy(), Set.of(),
                id -> at[n[0]++] = System.nanoTime());
        if (r.tokens().length != tokens) {
            throw new IllegalStateException("generated " + r.tokens().length + " tokens, asked for " + tokens
                    + " (the context is " + dir.config().contextLength() + ")");
        }
        return new Run(r.tokens(), (at[0] - start) / 1e6, (tokens - 1) / ((at[tokens - 1] - at[0]) / 1e9));
    }

    private static JsonArray array(int[] v) {
        JsonArray a = new JsonArray();
        Arrays.stream(v).forEach(a::add);
        return a;
    }

    private static JsonArray array(double[] v) {
        JsonArray a = new JsonArray();
        Arrays.stream(v).forEach(a::add);
        return a;
    }
}
