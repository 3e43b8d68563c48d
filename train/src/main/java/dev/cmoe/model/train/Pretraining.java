package dev.cmoe.model.train;

import ai.djl.ndarray.NDArray;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.io.AtomicDir;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.SafetensorsFile;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import dev.cmoe.model.safetensors.TensorInfo;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import ai.djl.ndarray.NDManager;
import java.util.Arrays;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.BooleanSupplier;

/**
 * A whole pre-training run: builds or resumes the model, loops over steps with the warm-up +
 * cosine schedule, validates periodically, and writes checkpoints in the Hugging Face layout the
 * loader reads. A checkpoint also holds the optimizer moments and the run's history, so
 * {@link #run} started again on the same output directory continues where it stopped, with the
 * same batches it would have seen.
 */
public final class Pretraining {
    static final String STATE_FILE = "trainer_state.json";
    static final String OPTIMIZER_FILE = "optimizer.safetensors";
    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create();

    /** Receives progress: step done, its loss, tokens per second so far; and validation results. */
    public interface Listener {
        void onStep(int step, double loss, double gradNorm, double lr);

        void onValidation(int step, double loss);

        void onCheckpoint(int step, Path dir);
    }

    /** What the run reached. */
    public record Summary(int steps, double trainLoss, double validationLoss, double seconds, long tokens) {
    }

    private Pretraining() {
    }

    /** The Hugging Face config.json of the model described by {@code run}, with the tokenizer's ids. */
    public static ModelConfig modelConfig(TrainConfig run, int bos, int eos) {
        JsonObject o = run.model().deepCopy();
        JsonArray arch = new JsonArray();
        arch.add("LlamaForCausalLM");
        o.add("architectures", arch);
        o.addProperty("model_type", o.has("model_type") ? o.get("model_type").getAsString() : "llama");
        o.addProperty("vocab_size", run.vocabSize());
        o.addProperty("hidden_act", "silu");
        o.addProperty("bos_token_id", bos);
        o.addProperty("eos_token_id", eos);
        o.addProperty("torch_dtype", "float32");
        return ModelConfig.parse(o.toString(), "training config 'model' block");
    }

    /**
     * Trains to {@code run.steps()} (or until {@code stop} says so, checkpointing there), writing
     * checkpoints to {@code out}. {@code tokenizerDir} holds the tokenizer files copied next to the weights.
     */
    public static Summary run(TrainConfig run, ModelConfig config, TokenData train, TokenData validation,
                              Path tokenizerDir, Path out, BooleanSupplier stop, Listener listener) {
        long start = System.nanoTime();
        JsonObject state = readState(out);
        int step = 0;
        TrainableLlama model;
        AdamW adam = new AdamW(run.beta1(), run.beta2(), 1e-8, run.weightDecay());
        JsonArray history = new JsonArray();
        if (state != null) {
            checkSameRun(state, run, out);
            step = state.get("step").getAsInt();
            history = state.getAsJsonArray("history");
            try (Checkpoint ckpt = Checkpoint.open(out)) {
                model = TrainableLlama.load(config, TensorSource.of(ckpt));
            }
            restoreOptimizer(adam, model, out, state.get("optimizer_step").getAsLong());
        } else {
            model = TrainableLlama.initialise(config, run.seed());
        }
        try (model; adam) {
            long[][] valWindows = validation.evenWindows(run.evalBatches() * run.batchSize(), run.seqLen());
            double lastLoss = Double.NaN;
            double lastVal = Double.NaN;
            while (step < run.steps()) {
                double lr = run.learningRate(step);
                Trainer.StepResult r = Trainer.step(model::loss, model.parameters(), adam,
                        train.batch(run.seed(), step, run.batchSize(), run.seqLen()),
                        run.batchSize(), run.seqLen(), lr, run.gradClip());
                if (!r.applied()) {
                    throw r.diverged(" at step " + (step + 1));
                }
                step++;
                lastLoss = r.loss();
                listener.onStep(step, r.loss(), r.gradNorm(), lr);
                boolean last = step == run.steps() || stop.getAsBoolean();
                JsonObject entry = null;
                if (step % run.evalEvery() == 0 || last) {
                    lastVal = Trainer.evaluate(model::loss, valWindows, run.evalBatches() * run.batchSize(),
                            run.seqLen(), run.batchSize());
                    listener.onValidation(step, lastVal);
                    entry = new JsonObject();
                    entry.addProperty("step", step);
                    entry.addProperty("train_loss", r.loss());
                    entry.addProperty("validation_loss", lastVal);
                    entry.addProperty("lr", lr);
                    history.add(entry);
                }
                if (step % run.checkpointEvery() == 0 || last) {
                    boolean finished = step == run.steps();
                    save(out, run, config, model, adam, step, history, tokenizerDir, !finished);
                    listener.onCheckpoint(step, out);
                }
                if (last) {
                    break;
                }
            }
            double secs = (System.nanoTime() - start) / 1e9;
            return new Summary(step, lastLoss, lastVal, secs, (long) step * run.batchSize() * run.seqLen());
        }
    }

    /** Writes the checkpoint directory atomically: weights, config, tokenizer, run state (and optimizer when resumable). */
    static void save(Path out, TrainConfig run, ModelConfig config, TrainableLlama model, AdamW adam, int step,
                     JsonArray history, Path tokenizerDir, boolean withOptimizer) {
        AtomicDir.write(out, true, dir -> {
            SafetensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), tensors(model.parameters()),
                    Map.of("format", "pt", "step", Integer.toString(step)), DType.F32);
            Files.writeString(dir.resolve("config.json"), config.toJson(), StandardCharsets.UTF_8);
            JsonObject gen = new JsonObject();
            gen.addProperty("bos_token_id", config.bosTokenId());
            gen.addProperty("eos_token_id", config.eosTokenId());
            gen.addProperty("do_sample", true);
            gen.addProperty("temperature", 0.8);
            gen.addProperty("top_p", 0.95);
            Files.writeString(dir.resolve("generation_config.json"), GSON.toJson(gen), StandardCharsets.UTF_8);
            for (String f : new String[] {"tokenizer.json", "tokenizer_config.json"}) {
                if (Files.exists(tokenizerDir.resolve(f))) {
                    Files.copy(tokenizerDir.resolve(f), dir.resolve(f), StandardCopyOption.REPLACE_EXISTING);
                }
            }
            JsonObject state = new JsonObject();
            state.addProperty("step", step);
            state.addProperty("optimizer_step", adam.step());
            state.add("run", runJson(run));
            state.add("history", history);
            state.addProperty("resumable", withOptimizer);
            Files.writeString(dir.resolve(STATE_FILE), GSON.toJson(state), StandardCharsets.UTF_8);
            if (withOptimizer) {
                Map<String, SafetensorsWriter.Tensor> moments = new LinkedHashMap<>();
                adam.firstMoments().forEach((k, a) -> moments.put("m." + k, tensor(a)));
                adam.secondMoments().forEach((k, a) -> moments.put("v." + k, tensor(a)));
                SafetensorsWriter.write(dir.resolve(OPTIMIZER_FILE), moments, Map.of(), DType.F32);
            }
        });
    }

    static Map<String, SafetensorsWriter.Tensor> tensors(Map<String, NDArray> params) {
        Map<String, SafetensorsWriter.Tensor> t = new LinkedHashMap<>();
        params.forEach((k, a) -> t.put(k, tensor(a)));
        return t;
    }

    static SafetensorsWriter.Tensor tensor(NDArray a) {
        return new SafetensorsWriter.Tensor(a.getShape().getShape(), FloatBuffer.wrap(a.toFloatArray()));
    }

    private static JsonObject runJson(TrainConfig run) {
        JsonObject o = new JsonObject();
        o.add("model", run.model());
        o.addProperty("vocab_size", run.vocabSize());
        o.addProperty("seed", run.seed());
        o.addProperty("batch_size", run.batchSize());
        o.addProperty("seq_len", run.seqLen());
        o.addProperty("steps", run.steps());
        o.addProperty("lr", run.lr());
        o.addProperty("min_lr", run.minLr());
        o.addProperty("warmup_steps", run.warmupSteps());
        o.addProperty("weight_decay", run.weightDecay());
        o.addProperty("beta1", run.beta1());
        o.addProperty("beta2", run.beta2());
        o.addProperty("grad_clip", run.gradClip());
        o.addProperty("eval_every", run.evalEvery());
        o.addProperty("eval_batches", run.evalBatches());
        o.addProperty("checkpoint_every", run.checkpointEvery());
        return o;
    }

    private static JsonObject readState(Path out) {
        Path f = out.resolve(STATE_FILE);
        if (!Files.exists(f)) {
            if (Files.exists(out) && !isEmptyDir(out)) {
                throw new IllegalArgumentException("output directory " + out
                        + " exists but holds no training state to resume; choose another --out");
            }
            return null;
        }
        try {
            JsonObject s = JsonParser.parseString(Files.readString(f, StandardCharsets.UTF_8)).getAsJsonObject();
            return s;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + f, e);
        }
    }

    private static boolean isEmptyDir(Path dir) {
        try (var s = Files.list(dir)) {
            return s.findAny().isEmpty();
        } catch (IOException e) {
            return false;
        }
    }

    private static void checkSameRun(JsonObject state, TrainConfig run, Path out) {
        if (!state.get("run").equals(runJson(run))) {
            throw new IllegalArgumentException("the checkpoint in " + out
                    + " was made by a different training config; resume with the same config or choose another --out");
        }
        if (!state.get("resumable").getAsBoolean() && state.get("step").getAsInt() < run.steps()) {
            throw new IllegalArgumentException("the checkpoint in " + out + " has no optimizer state to resume from");
        }
    }

    /** Loads the AdamW moments saved next to the weights. */
    private static void restoreOptimizer(AdamW adam, TrainableLlama model, Path out, long optimizerStep) {
        Map<String, NDArray> m = new LinkedHashMap<>();
        Map<String, NDArray> v = new LinkedHashMap<>();
        try (SafetensorsFile opt = SafetensorsFile.open(out.resolve(OPTIMIZER_FILE))) {
            TensorSource source = (name, shape) -> {
                TensorInfo info = opt.tensors().get(name);
                if (info == null || !Arrays.equals(info.shape(), shape)) {
                    throw new IllegalArgumentException(out.resolve(OPTIMIZER_FILE) + ": optimizer state for '" + name
                            + "' is missing or has the wrong shape");
                }
                return opt.readF32(name);
            };
            NDManager manager = NDManager.newBaseManager();
            try (manager) {
                for (Map.Entry<String, NDArray> e : model.parameters().entrySet()) {
                    long[] shape = e.getValue().getShape().getShape();
                    m.put(e.getKey(), Tensors.load(manager, source, "m." + e.getKey(), shape));
                    v.put(e.getKey(), Tensors.load(manager, source, "v." + e.getKey(), shape));
                }
                adam.restore(optimizerStep, m, v);
            }
        }
    }
}
