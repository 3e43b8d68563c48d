package dev.cmoe.carve.adapt;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.train.LoraSpec;
import java.util.Objects;

/**
 * What an adaptation run does: how many training windows it draws and how it trains on them.
 * The defaults are the CMoE reference's (2,048 windows, 1 epoch, batch 2, LoRA r 8 / alpha 32 /
 * dropout 0.1, lr 5.7e-5, u at 1e-3, γ 1e-3). Checked on construction so a bad flag fails before
 * any model is loaded, with a message that names it.
 *
 * @param samples training windows drawn once at random offsets of the training text
 * @param seqLen tokens per window as asked; {@link #seqLen(ModelConfig)} clamps it to the context
 * @param epochs passes over the windows (reshuffled each epoch)
 * @param batch windows per step
 * @param lora the adapters' rank, alpha and dropout
 * @param lr peak learning rate of the LoRA matrices (linear decay to 0 over the run)
 * @param scaleLr peak learning rate of the router scales u (same decay)
 * @param biasSpeed γ: the step of the load-balancing bias b after every batch
 * @param gradClip global gradient-norm clip over all trained arrays
 * @param seed seeds the windows, their order, the adapters' initialisation and dropout
 * @param evalSamples validation windows scored before and after (0 = none)
 * @param logEvery steps per history entry (loss, load imbalance and u statistics)
 * @param checkpointEvery steps between resumable checkpoints
 */
public record AdaptOptions(int samples, int seqLen, int epochs, int batch, LoraSpec lora, double lr, double scaleLr,
                           double biasSpeed, double gradClip, long seed, int evalSamples, int logEvery,
                           int checkpointEvery) {

    public AdaptOptions {
        Objects.requireNonNull(lora, "lora");
        if (samples < 1) {
            throw new IllegalArgumentException("--samples must be at least 1 training window, got " + samples
                    + " (with no samples there is nothing to adapt)");
        }
        if (seqLen < 2) {
            throw new IllegalArgumentException("--seqlen must be at least 2 tokens, got " + seqLen);
        }
        if (epochs < 1) {
            throw new IllegalArgumentException("--epochs must be at least 1, got " + epochs);
        }
        if (batch < 1) {
            throw new IllegalArgumentException("--batch must be at least 1, got " + batch);
        }
        requirePositive("--lr", lr);
        requirePositive("--scale-lr", scaleLr);
        if (!(biasSpeed >= 0) || Double.isInfinite(biasSpeed)) {
            throw new IllegalArgumentException("--bias-speed must be >= 0 and finite, got " + biasSpeed);
        }
        requirePositive("--grad-clip", gradClip);
        if (evalSamples < 0) {
            throw new IllegalArgumentException("--eval-samples must not be negative, got " + evalSamples);
        }
        if (logEvery < 1) {
            throw new IllegalArgumentException("--log-every must be at least 1, got " + logEvery);
        }
        if (checkpointEvery < 1) {
            throw new IllegalArgumentException("--checkpoint-every must be at least 1, got " + checkpointEvery);
        }
    }

    /** The reference's settings for {@code samples} windows of {@code seqLen}. */
    public static AdaptOptions defaults(int samples, int seqLen) {
        return new AdaptOptions(samples, seqLen, 1, 2, new LoraSpec(8, 32, 0.1), 5.7e-5, 1e-3, 1e-3, 1.0, 0, 32,
                10, 100);
    }

    private static void requirePositive(String flag, double v) {
        if (!(v > 0) || Double.isInfinite(v)) {
            throw new IllegalArgumentException(flag + " must be a positive number, got " + v);
        }
    }

    /** The window length used on {@code config}: {@link #seqLen} clamped to the model's context. */
    public int seqLen(ModelConfig config) {
        return Math.min(seqLen, config.contextLength());
    }

    /** Optimisation steps of one epoch: the last batch of an epoch may be smaller. */
    public int stepsPerEpoch() {
        return (samples + batch - 1) / batch;
    }

    public int totalSteps() {
        return Math.multiplyExact(stepsPerEpoch(), epochs);
    }

    /**
     * The learning-rate factor at {@code step} (0-based): linear decay from 1 to 0, the default
     * schedule of Hugging Face's Trainer, which the reference fine-tunes with.
     */
    public double decay(int step) {
        return 1.0 - (double) step / totalSteps();
    }

    public AdaptOptions withSeed(long newSeed) {
        return new AdaptOptions(samples, seqLen, epochs, batch, lora, lr, scaleLr, biasSpeed, gradClip, newSeed,
                evalSamples, logEvery, checkpointEvery);
    }

    public AdaptOptions withLr(double newLr, double newScaleLr) {
        return new AdaptOptions(samples, seqLen, epochs, batch, lora, newLr, newScaleLr, biasSpeed, gradClip, seed,
                evalSamples, logEvery, checkpointEvery);
    }

    public AdaptOptions withSchedule(int newEvalSamples, int newLogEvery, int newCheckpointEvery) {
        return new AdaptOptions(samples, seqLen, epochs, batch, lora, lr, scaleLr, biasSpeed, gradClip, seed,
                newEvalSamples, newLogEvery, newCheckpointEvery);
    }
}
