package dev.cmoe.carve.adapt;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.google.gson.JsonObject;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.moe.BiasRule;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.SafetensorsFile;
import dev.cmoe.model.safetensors.TensorInfo;
import dev.cmoe.model.train.AdamW;
import dev.cmoe.model.train.TokenData;
import dev.cmoe.model.train.Trainer;
import dev.cmoe.model.train.TrainableMoeLlama;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.BooleanSupplier;

/**
 * CMoE's lightweight adaptation of a carved model, as one resumable run: a fixed sample of
 * training windows, LoRA adapters and router scales u trained with Adam (β = 0.9, 0.95, no
 * weight decay, linear decay of the learning rates), the bias b moved by γ after every step from
 * the step's measured loads. Checkpoints are normal carved models (adapters merged) plus the
 * state to continue from; running the same command again continues where it stopped, with the
 * same batches and dropout masks it would have had.
 */
public final class Adaptation {
    /** Non-finite steps in a row after which the run stops as diverged rather than skipping on. */
    public static final int MAX_SKIPPED_IN_A_ROW = 3;

    /** Receives progress. */
    public interface Listener {
        /**
         * Training starts, or resumes, at {@code step} of {@code totalSteps} ({@code tokens} of
         * {@code totalTokens}); step = totalSteps when the run in the output was already finished.
         */
        void onStart(int step, int totalSteps, long tokens, long totalTokens, int seqLen);

        /** A step is done: its loss, and its max/mean expert load averaged over the layers. */
        void onStep(int step, long tokens, double loss, double imbalance);

        /**
         * Step {@code step} had a non-finite loss or gradient and changed nothing; the run goes on
         * unless {@link Adaptation#MAX_SKIPPED_IN_A_ROW} steps in a row do.
         */
        default void onSkipped(int step, double loss, double gradNorm) {
        }

        /** A validation pass, "before" the first step or "after" the last. */
        void onEval(String phase, AdaptReport.Eval eval);

        void onCheckpoint(int step, Path dir);

        Listener NONE = new Listener() {
            @Override
            public void onStart(int step, int totalSteps, long tokens, long totalTokens, int seqLen) {
            }

            @Override
            public void onStep(int step, long tokens, double loss, double imbalance) {
            }

            @Override
            public void onEval(String phase, AdaptReport.Eval eval) {
            }

            @Override
            public void onCheckpoint(int step, Path dir) {
            }
        };
    }

    private static final double BETA1 = 0.9;
    private static final double BETA2 = 0.95;

    private final Path input;
    private final Path out;
    private final AdaptOptions opts;
    private final int seqLen;
    private final TrainableMoeLlama model;
    private final AdamW adam;
    private final Listener listener;

    private Adaptation(Path input, Path out, AdaptOptions opts, int seqLen, TrainableMoeLlama model, AdamW adam,
                       Listener listener) {
        this.input = input;
        this.out = out;
        this.opts = opts;
        this.seqLen = seqLen;
        this.model = model;
        this.adam = adam;
        this.listener = listener;
    }

    /**
     * Adapts the carved model in {@code model} on windows of {@code train}, writing to {@code out}
     * (continuing the run found there), until the last step or until {@code stop} says so.
     *
     * @param validation scored before and after (null: no validation)
     * @return the report so far; {@link AdaptReport#finished()} tells whether the run is complete
     */
    public static AdaptReport run(Path model, TokenData train, TokenData validation, Path out, AdaptOptions opts,
                                  BooleanSupplier stop, Listener listener) {
        Path in = model.toAbsolutePath().normalize();
        if (in.equals(out.toAbsolutePath().normalize())) {
            throw new IllegalArgumentException("--out must differ from --model (" + model
                    + "): the carved model is read throughout the run");
        }
        if (!Files.isDirectory(model)) {
            throw new IllegalArgumentException("model directory " + model + " does not exist");
        }
        ModelConfig config = ModelConfig.load(model);
        MoeConfig moe = MoeConfig.of(config).orElseThrow(() -> new IllegalArgumentException(model
                + " is a dense model (its config.json has no '" + MoeConfig.KEY
                + "' block); carve it first with 'cmoe carve'"));
        int seqLen = opts.seqLen(config);
        JsonObject run = runJson(in, opts, seqLen);
        AdaptState state = AdaptState.read(out);
        if (state == null && Files.exists(out) && !isEmptyDir(out)) {
            throw new IllegalArgumentException("output directory " + out
                    + " exists but holds no adaptation to resume; choose another --out");
        }
        if (state != null) {
            if (!state.run().equals(run)) {
                throw new IllegalArgumentException("the adaptation in " + out + " was made with other settings ("
                        + state.run() + "); resume with the same flags or choose another --out");
            }
            if (!state.resumable()) {
                AdaptReport done = AdaptReport.read(out); // finished earlier: nothing left to do
                listener.onStart(done.steps(), done.totalSteps(), done.tokens(), done.tokens(), done.seqLen());
                return done;
            }
        }
        int[] starts = train.randomStarts(opts.seed(), opts.samples(), seqLen);
        long[][] valWindows = validation == null || opts.evalSamples() == 0 ? null
                : validation.evenWindows(opts.evalSamples(), seqLen);
        try (Checkpoint checkpoint = Checkpoint.open(model);
             TrainableMoeLlama m = TrainableMoeLlama.load(config, moe, TensorSource.of(checkpoint), opts.lora(),
                     opts.seed());
             AdamW adam = new AdamW(BETA1, BETA2, 1e-8, 0)) {
            Adaptation a = new Adaptation(in, out, opts, seqLen, m, adam, listener);
            if (state != null) {
                a.restore(state.optimizerStep());
            }
            return a.train(state, run, train, starts, valWindows, new AdaptedCheckpoint(model, checkpoint, config),
                    stop);
        }
    }

    private AdaptReport train(AdaptState state, JsonObject run, TokenData data, int[] starts, long[][] valWindows,
                              AdaptedCheckpoint writer, BooleanSupplier stop) {
        int total = opts.totalSteps();
        int layers = model.config().numLayers();
        int nRouted = model.moe().routed();
        int step = state == null ? 0 : state.step();
        double seconds = state == null ? 0 : state.seconds(); // in training steps, over all sessions
        List<AdaptReport.Entry> history = new ArrayList<>(state == null ? List.of() : state.history());
        AdaptState.Pending pending = state == null ? new AdaptState.Pending(0, 0, new long[layers][nRouted], 0)
                : state.pending();
        int skippedInARow = 0;
        AdaptReport.Eval before = state == null ? evaluate("before", 0, valWindows) : state.before();
        listener.onStart(step, total, tokens(step), tokens(total), seqLen);
        int[] order = null;
        int orderEpoch = -1;
        while (step < total) {
            int epoch = step / opts.stepsPerEpoch();
            if (epoch != orderEpoch) {
                order = permutation(opts.samples(), opts.seed(), epoch);
                orderEpoch = epoch;
            }
            int from = step % opts.stepsPerEpoch() * opts.batch();
            int n = Math.min(opts.batch(), opts.samples() - from);
            int[] batchStarts = new int[n];
            for (int i = 0; i < n; i++) {
                batchStarts[i] = starts[order[from + i]];
            }
            double decay = opts.decay(step);
            long started = System.nanoTime();
            // dropout masks come from the engine's generator: seeding it per step makes a resumed run identical
            Engine.getInstance().setRandomSeed(Long.hashCode(opts.seed() * 0x9E3779B97F4A7C15L + step));
            Trainer.StepResult r = Trainer.step((x, y) -> model.loss(x, y, true), model.parameters(), adam,
                    data.windows(batchStarts, seqLen), n, seqLen,
                    name -> (TrainableMoeLlama.isRouterScale(name) ? opts.scaleLr() : opts.lr()) * decay,
                    opts.gradClip());
            long[][] loads = model.takeLoads();
            seconds += (System.nanoTime() - started) / 1e9;
            step++;
            if (r.applied()) {
                skippedInARow = 0;
                model.updateBias(loads, opts.biasSpeed());
                pending = add(pending, r.loss(), loads);
                listener.onStep(step, tokens(step), r.loss(), Arrays.stream(imbalance(loads)).average().orElse(1));
            } else {
                // a rare non-finite step on the CPU engine did not recur when the same batch ran again
                // (resumed from a checkpoint), so one is skipped like a mixed-precision loss scaler does
                if (++skippedInARow >= MAX_SKIPPED_IN_A_ROW) {
                    throw r.diverged(" at step " + step + ", the " + skippedInARow + "th non-finite step in a row");
                }
                pending = pending.skip();
                listener.onSkipped(step, r.loss(), r.gradNorm());
            }
            boolean last = step == total;
            boolean stopping = !last && stop.getAsBoolean();
            if (step % opts.logEvery() == 0 || last) {
                history.add(entry(step, pending, opts.lr() * decay));
                pending = new AdaptState.Pending(0, 0, new long[layers][nRouted], 0);
            }
            if (last || stopping || step % opts.checkpointEvery() == 0) {
                AdaptReport.Eval after = last ? evaluate("after", step, valWindows) : null;
                AdaptReport report = report(step, seconds, before, after, history);
                AdaptState saved = new AdaptState(step, adam.step(), run, !last, seconds, before, history, pending);
                writer.write(out, model, last ? null : adam, saved, report);
                listener.onCheckpoint(step, out);
                if (last || stopping) {
                    return report;
                }
            }
        }
        throw new IllegalStateException("adaptation loop ended at step " + step + " of " + total);
    }

    /** Loss and loads on the validation windows without dropout; null when there are none. */
    private AdaptReport.Eval evaluate(String phase, int step, long[][] windows) {
        if (windows == null) {
            return null;
        }
        model.takeLoads(); // count only this pass
        int count = windows[0].length / seqLen;
        double loss = Trainer.evaluate((x, y) -> model.loss(x, y, false), windows, count, seqLen, opts.batch());
        long[][] loads = model.takeLoads();
        AdaptReport.Eval e = new AdaptReport.Eval(step, count, loss, Math.exp(loss), loads, imbalance(loads));
        listener.onEval(phase, e);
        return e;
    }

    private AdaptReport.Entry entry(int step, AdaptState.Pending p, double lr) {
        int layers = model.config().numLayers();
        AdaptReport.ScaleStats[] u = new AdaptReport.ScaleStats[layers];
        for (int l = 0; l < layers; l++) {
            u[l] = AdaptReport.ScaleStats.of(model.scale(l));
        }
        return new AdaptReport.Entry(step, (step - 1) / opts.stepsPerEpoch(), tokens(step),
                p.steps() > 0 ? p.lossSum() / p.steps() : 0, lr, imbalance(p.loads()), u, p.skipped());
    }

    private AdaptReport report(int step, double seconds, AdaptReport.Eval before, AdaptReport.Eval after,
                               List<AdaptReport.Entry> history) {
        List<AdaptReport.Layer> layers = new ArrayList<>();
        for (int l = 0; l < model.config().numLayers(); l++) {
            layers.add(new AdaptReport.Layer(l, model.scale(l), model.bias(l)));
        }
        long tokens = tokens(step);
        return new AdaptReport(input.toString(), out.toString(), opts, seqLen, step, opts.totalSteps(), tokens,
                seconds, seconds > 0 ? tokens / seconds : 0, before, after, history, layers);
    }

    /** Training tokens in the first {@code step} steps (an epoch's last batch may be short). */
    private long tokens(int step) {
        long epochs = step / opts.stepsPerEpoch();
        long inEpoch = Math.min((long) (step % opts.stepsPerEpoch()) * opts.batch(), opts.samples());
        return (epochs * opts.samples() + inEpoch) * seqLen;
    }

    private static AdaptState.Pending add(AdaptState.Pending p, double loss, long[][] loads) {
        long[][] sum = new long[loads.length][];
        for (int l = 0; l < loads.length; l++) {
            sum[l] = p.loads()[l].clone();
            for (int j = 0; j < sum[l].length; j++) {
                sum[l][j] += loads[l][j];
            }
        }
        return new AdaptState.Pending(p.steps() + 1, p.lossSum() + loss, sum, p.skipped());
    }

    private static double[] imbalance(long[][] loads) {
        double[] out = new double[loads.length];
        for (int l = 0; l < loads.length; l++) {
            out[l] = BiasRule.imbalance(loads[l]);
        }
        return out;
    }

    /** The order of the windows in {@code epoch}: a seeded shuffle, different every epoch. */
    static int[] permutation(int n, long seed, int epoch) {
        int[] p = new int[n];
        Arrays.setAll(p, i -> i);
        SplittableRandom r = new SplittableRandom(seed * 31 + epoch + 1);
        for (int i = n - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            int t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        return p;
    }

    /** What a resumed run must share with the interrupted one (how often it checkpoints may change). */
    private static JsonObject runJson(Path model, AdaptOptions opts, int seqLen) {
        JsonObject o = new JsonObject();
        o.addProperty("model", model.toString());
        JsonObject options = AdaptReport.toTree(opts).getAsJsonObject();
        options.remove("checkpointEvery");
        o.add("options", options);
        o.addProperty("seq_len", seqLen);
        return o;
    }

    /** Puts the adapters, b and the optimizer moments of the interrupted run back. */
    private void restore(long optimizerStep) {
        Path file = out.resolve(AdaptState.TENSORS);
        if (!Files.isRegularFile(file)) {
            throw new IllegalArgumentException("the adaptation in " + out + " is unfinished but " + AdaptState.TENSORS
                    + " is missing; choose another --out");
        }
        try (SafetensorsFile saved = SafetensorsFile.open(file); NDManager manager = NDManager.newBaseManager()) {
            TensorSource source = (name, shape) -> {
                TensorInfo info = saved.tensors().get(name);
                if (info == null || !Arrays.equals(info.shape(), shape)) {
                    throw new IllegalArgumentException(file + ": '" + name + "' is missing or has the wrong shape");
                }
                return saved.readF32(name);
            };
            model.restoreAdapters(source);
            Map<String, NDArray> m = new LinkedHashMap<>();
            Map<String, NDArray> v = new LinkedHashMap<>();
            for (Map.Entry<String, NDArray> e : model.parameters().entrySet()) {
                long[] shape = e.getValue().getShape().getShape();
                m.put(e.getKey(), Tensors.load(manager, source, AdaptedCheckpoint.FIRST_MOMENT + e.getKey(), shape));
                v.put(e.getKey(), Tensors.load(manager, source, AdaptedCheckpoint.SECOND_MOMENT + e.getKey(), shape));
            }
            adam.restore(optimizerStep, m, v);
        }
    }

    private static boolean isEmptyDir(Path dir) {
        try (var s = Files.list(dir)) {
            return s.findAny().isEmpty();
        } catch (IOException e) {
            return false;
        }
    }
}
