package dev.cmoe.model.train;

import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A pre-training run: the model's shape (a partial Hugging Face config; the vocabulary and
 * special ids come from the tokenizer) and the optimisation schedule. Read from a JSON file such
 * as {@code models/small.json}.
 */
public record TrainConfig(
        JsonObject model,
        int vocabSize,
        long seed,
        int batchSize,
        int seqLen,
        int steps,
        double lr,
        double minLr,
        int warmupSteps,
        double weightDecay,
        double beta1,
        double beta2,
        double gradClip,
        int evalEvery,
        int evalBatches,
        int checkpointEvery) {

    public TrainConfig {
        require(vocabSize >= 259, "vocab_size must be at least 259 (256 bytes + specials), got " + vocabSize);
        require(batchSize > 0, "batch_size must be positive, got " + batchSize);
        require(seqLen > 1, "seq_len must be at least 2, got " + seqLen);
        require(steps > 0, "steps must be positive, got " + steps);
        require(lr > 0 && minLr >= 0 && minLr <= lr, "need 0 <= min_lr <= lr and lr > 0, got lr " + lr + ", min_lr " + minLr);
        require(warmupSteps >= 0 && warmupSteps < steps, "warmup_steps must be in [0, steps), got " + warmupSteps);
        require(weightDecay >= 0, "weight_decay must be >= 0, got " + weightDecay);
        require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "betas must be in [0, 1), got " + beta1 + ", " + beta2);
        require(gradClip > 0, "grad_clip must be positive, got " + gradClip);
        require(evalEvery > 0 && evalBatches > 0, "eval_every and eval_batches must be positive");
        require(checkpointEvery > 0, "checkpoint_every must be positive, got " + checkpointEvery);
    }

    private static void require(boolean ok, String message) {
        if (!ok) {
            throw new IllegalArgumentException("training config: " + message);
        }
    }

    /** Reads a training config file; unknown keys are an error so typos do not pass silently. */
    public static TrainConfig load(Path file) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read training config " + file + ": " + e.getMessage(), e);
        }
        try {
            return parse(JsonParser.parseString(text).getAsJsonObject());
        } catch (JsonParseException | IllegalStateException | ClassCastException | NullPointerException e) {
            throw new IllegalArgumentException("training config " + file + " is not valid: " + e.getMessage(), e);
        }
    }

    public static TrainConfig parse(JsonObject o) {
        for (String key : o.keySet()) {
            if (!java.util.Set.of("model", "vocab_size", "seed", "batch_size", "seq_len", "steps", "lr", "min_lr",
                    "warmup_steps", "weight_decay", "beta1", "beta2", "grad_clip", "eval_every", "eval_batches",
                    "checkpoint_every").contains(key)) {
                throw new IllegalArgumentException("training config: unknown key '" + key + "'");
            }
        }
        if (!o.has("model") || !o.get("model").isJsonObject()) {
            throw new IllegalArgumentException("training config: 'model' must be an object of config.json fields");
        }
        return new TrainConfig(
                o.getAsJsonObject("model").deepCopy(),
                o.get("vocab_size").getAsInt(),
                o.get("seed").getAsLong(),
                o.get("batch_size").getAsInt(),
                o.get("seq_len").getAsInt(),
                o.get("steps").getAsInt(),
                o.get("lr").getAsDouble(),
                o.get("min_lr").getAsDouble(),
                o.get("warmup_steps").getAsInt(),
                o.get("weight_decay").getAsDouble(),
                o.get("beta1").getAsDouble(),
                o.get("beta2").getAsDouble(),
                o.get("grad_clip").getAsDouble(),
                o.get("eval_every").getAsInt(),
                o.get("eval_batches").getAsInt(),
                o.get("checkpoint_every").getAsInt());
    }

    /** Learning rate at {@code step}: linear warm-up, then cosine decay to {@code minLr}. */
    public double learningRate(int step) {
        if (step < warmupSteps) {
            return lr * (step + 1) / warmupSteps;
        }
        double progress = (double) (step - warmupSteps) / Math.max(1, steps - warmupSteps);
        return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * Math.min(1, progress)));
    }
}
