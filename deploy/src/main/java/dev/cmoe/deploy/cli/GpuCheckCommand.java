package dev.cmoe.deploy.cli;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.LibUtils;
import ai.djl.util.cuda.CudaUtils;
import dev.cmoe.deploy.bench.EngineBench;
import dev.cmoe.experts.cluster.DeviceSpec;
import dev.cmoe.model.EngineNatives;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.CarvedTopology;
import java.lang.management.MemoryUsage;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code cmoe gpu-check}: whether a device can host a carved model's routed experts, and how
 * fast. The experts go to the device through the serving path (an expert worker for it, a router
 * per layer), and the prompt's logits and greedy tokens are compared with the in-process CPU
 * forward; a prepared check to run on a CUDA machine (scripts/gpu-check.sh), and with
 * {@code --device cpu} the same path without one.
 */
@Command(name = "gpu-check", mixinStandardHelpOptions = true,
        description = "Serve a carved model's routed experts on a device (gpu:N / cuda:N; cpu for a dry run) and"
                + " compare the prompt's logits and greedy tokens with the in-process CPU forward; prints the engine,"
                + " the devices and decode speed. Exit 1 when they disagree.")
public final class GpuCheckCommand implements Callable<Integer> {
    /** Greedy decode: the tokens must agree exactly, the logits within a tolerance. */
    private static final SamplingParams GREEDY = SamplingParams.greedy();

    @Option(names = "--model", required = true, description = "A carved model directory (a cmoe block in config.json).")
    Path model;

    @Option(names = "--device", defaultValue = "gpu:0", description = "Where the routed experts go: gpu:N (cuda:N),"
            + " or cpu (default: ${DEFAULT-VALUE}).")
    String device;

    @Mixin
    DtypeOption dtype;

    @Option(names = "--prompt", defaultValue = "The old man said that the county had", description = "Prompt text.")
    String prompt;

    @Option(names = "--tokens", defaultValue = "32", description = "Greedy tokens to compare and time"
            + " (default: ${DEFAULT-VALUE}).")
    int tokens;

    @Option(names = "--repeats", defaultValue = "3", description = "Timed generations per path; the median is"
            + " printed (default: ${DEFAULT-VALUE}).")
    int repeats;

    @Option(names = "--tolerance", description = "Largest |logit difference| allowed, relative to the largest"
            + " |logit| (default: 1e-3 for f32, 3e-2 for bf16/f16).")
    Double tolerance;

    @Override
    public Integer call() throws Exception {
        if (tokens < 2 || repeats < 1) {
            throw new IllegalArgumentException("--tokens must be ≥ 2 and --repeats ≥ 1, got " + tokens + " and "
                    + repeats);
        }
        List<DeviceSpec> specs = DeviceSpec.parse(device);
        if (specs.size() != 1) {
            throw new IllegalArgumentException("--device takes one device, got " + device
                    + " (check each GPU in turn; a head or worker's --devices spreads experts over several)");
        }
        DeviceSpec spec = specs.get(0);
        System.out.print(engineReport());
        try (ModelDir reference = ModelDir.open(model, dtype.apply(LoadSpec.full()));
             ModelDir served = ModelDir.open(model, dtype.apply(LoadSpec.withoutRoutedExperts()));
             Checkpoint checkpoint = Checkpoint.open(model)) {
            var moe = served.moe().orElseThrow(() -> new IllegalArgumentException("model " + model
                    + " is dense (no cmoe block in config.json): gpu-check serves a carved model's routed experts"));
            DType computed = reference.model().kernels().dtype();
            double limit = tolerance != null ? tolerance : computed == DType.F32 ? 1e-3 : 3e-2;
            int[] ids = reference.tokenizer().encodeIds(prompt, true);
            ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), "gpu-check");
            try {
                long loadStart = System.nanoTime();
                String placement = CarvedTopology.install(system, served.model(), moe, TensorSource.of(checkpoint),
                        spec.device(), ServerMetrics.discarding());
                double loadSecs = (System.nanoTime() - loadStart) / 1e9;
                System.out.printf(Locale.ROOT, "experts: %s, loaded in %.1f s%n", placement, loadSecs);

                float[] want = lastLogits(reference.model(), ids);
                float[] got = lastLogits(served.model(), ids);
                Agreement logits = Agreement.of(want, got);
                boolean logitsOk = logits.within(limit);

                Timing cpu = time(reference.model(), ids);
                Timing dev = time(served.model(), ids);
                int firstDiff = firstDifference(cpu.tokens, dev.tokens);

                System.out.printf(Locale.ROOT, "%nmodel %s, %s, prompt %d tokens, %d greedy tokens, median of %d%n",
                        model.getFileName(), computed.shortName(), ids.length, tokens, repeats);
                System.out.println("| path | routed experts on | prefill + first token ms | decode tok/s |");
                System.out.println("| --- | --- | ---: | ---: |");
                System.out.printf(Locale.ROOT, "| in-process | cpu | %.1f | %.1f |%n", cpu.firstMs, cpu.tokPerSec);
                System.out.printf(Locale.ROOT, "| expert actors | %s | %.1f | %.1f |%n", spec.name(), dev.firstMs,
                        dev.tokPerSec);
                System.out.printf(Locale.ROOT, "%nlogits: max |diff| %.3g, %.3g of max |logit| %.3g (tolerance %.1g):"
                        + " %s%n", logits.maxDiff(), logits.relative(), logits.maxAbs(), limit,
                        logitsOk ? "PASS" : "FAIL");
                System.out.println("greedy tokens: " + (firstDiff < 0 ? "equal: PASS"
                        : "differ from token " + firstDiff + " (cpu " + Arrays.toString(cpu.tokens) + ", "
                        + spec.name() + " " + Arrays.toString(dev.tokens) + "): FAIL"));
                return logitsOk && firstDiff < 0 ? 0 : 1;
            } finally {
                system.terminate();
                system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
            }
        }
    }

    /** The engine, the natives it loaded and the GPUs it sees, with each one's memory. */
    static String engineReport() {
        Engine engine = Engine.getInstance();
        StringBuilder out = new StringBuilder();
        String local = System.getenv(EngineNatives.ENV);
        String natives = local != null && !local.isBlank() ? "local libtorch (" + EngineNatives.ENV + ", "
                + System.getProperty("PYTORCH_FLAVOR") + ")" : "the class path's CPU build";
        out.append(String.format(Locale.ROOT, "engine: %s %s, natives: %s at %s%n", engine.getEngineName(),
                engine.getVersion(), natives, LibUtils.getLibtorchPath()));
        int gpus = engine.getGpuCount();
        out.append("GPUs seen: ").append(gpus).append('\n');
        for (int i = 0; i < gpus; i++) {
            int g = i;
            String memory;
            try {
                MemoryUsage m = DeviceSpec.gpuMemory(Device.gpu(g));
                memory = String.format(Locale.ROOT, "%.1f GiB of %.1f GiB free", (m.getMax() - m.getUsed())
                        / (double) (1L << 30), m.getMax() / (double) (1L << 30));
            } catch (IllegalArgumentException e) {
                memory = e.getMessage();
            }
            out.append(String.format(Locale.ROOT, "  gpu:%d: compute capability %s, %s%n", g,
                    safe(() -> CudaUtils.getComputeCapability(g)), memory));
        }
        return out.toString();
    }

    private static String safe(Supplier<String> s) {
        try {
            return s.get();
        } catch (RuntimeException e) {
            return "unknown";
        }
    }

    private static float[] lastLogits(LlamaModel model, int[] ids) {
        try (NDManager m = NDManager.newBaseManager(); KvCache cache = model.newCache(ids.length)) {
            NDArray logits = model.forward(List.of(new SequenceChunk(cache, ids)), LogitsMode.LAST, m);
            return logits.toFloatArray();
        }
    }

    /**
     * How far {@code got} is from {@code want}: the largest absolute difference, and that over the
     * largest |want|. A non-finite value on either side is never within a tolerance.
     */
    record Agreement(double maxDiff, double maxAbs, double relative) {
        static Agreement of(float[] want, float[] got) {
            if (want.length != got.length) {
                throw new IllegalArgumentException("logits of " + got.length + " entries, expected " + want.length);
            }
            double maxAbs = 0;
            double diff = 0;
            for (int i = 0; i < want.length; i++) {
                double d = Math.abs((double) want[i] - got[i]);
                maxAbs = Math.max(maxAbs, Math.abs(want[i]));
                diff = Math.max(diff, d); // NaN stays NaN
            }
            return new Agreement(diff, maxAbs, diff / Math.max(maxAbs, Double.MIN_NORMAL));
        }

        boolean within(double tolerance) {
            return Double.isFinite(relative) && relative <= tolerance;
        }
    }

    private record Timing(int[] tokens, double firstMs, double tokPerSec) {
    }

    /** Generates greedily {@code repeats} times (after one untimed run) and keeps the median of each figure. */
    private Timing time(LlamaModel model, int[] ids) {
        Generator.generate(model, ids, tokens, GREEDY, Set.of(), t -> { }); // warms the engine and the actors
        double[] firsts = new double[repeats];
        double[] rates = new double[repeats];
        int[] out = null;
        for (int r = 0; r < repeats; r++) {
            long[] at = new long[tokens];
            int[] n = {0};
            long start = System.nanoTime();
            out = Generator.generate(model, ids, tokens, GREEDY, Set.of(), t -> at[n[0]++] = System.nanoTime())
                    .tokens();
            if (n[0] < 2) {
                throw new IllegalArgumentException("the prompt of " + ids.length + " tokens leaves room for "
                        + n[0] + " generated token(s) in the model's context: too few to time decode");
            }
            firsts[r] = (at[0] - start) / 1e6;
            rates[r] = (n[0] - 1) / ((at[n[0] - 1] - at[0]) / 1e9);
        }
        return new Timing(out, EngineBench.median(firsts), EngineBench.median(rates));
    }

    static int firstDifference(int[] a, int[] b) {
        for (int i = 0; i < Math.max(a.length, b.length); i++) {
            if (i >= a.length || i >= b.length || a[i] != b[i]) {
                return i;
            }
        }
        return -1;
    }
}
