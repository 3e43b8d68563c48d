package dev.cmoe.deploy.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
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
        try (ModelDir dir = ModelDir.open(model)) {
            int[] ids = promptIds(dir.tokenizer().encodeIds(text, true), prompt);
            Run first = run(dir, ids); // untimed: warms the engine's kernels and allocator
            double[] prefillMs = new double[repeats];
            double[] decodeTps = new double[repeats];
            for (int r = 0; r < repeats; r++) {
                Run run = run(dir, ids);
                if (!Arrays.equals(run.ids, first.ids)) {
                    throw new IllegalStateException("greedy ids differ between repeats: " + Arrays.toString(first.ids)
                            + " then " + Arrays.toString(run.ids));
                }
                prefillMs[r] = run.prefillMs;
                decodeTps[r] = run.decodeTps;
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
            AtomicFile.write(json, new GsonBuilder().setPrettyPrinting().create().toJson(o)
                    .getBytes(StandardCharsets.UTF_8));
            System.err.printf(Locale.ROOT, "cmoe bench-decode: prefill %d tokens %.1f ms, decode %.1f tokens/s"
                    + " (medians of %d)%n", ids.length, median(prefillMs), median(decodeTps), repeats);
        }
        return 0;
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

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
