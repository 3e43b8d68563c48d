package dev.cmoe.model.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import java.util.Map;
import java.util.function.ToDoubleFunction;

/**
 * One optimisation step and one validation pass of a {@link TrainableLlama}: forward, backward
 * through DJL autograd, global gradient-norm clipping, AdamW. Kept apart from the run loop
 * (checkpoints, progress) so adaptation can reuse it with its own parameter set.
 */
public final class Trainer {
    /** Loss before the update, and the gradient norm before clipping. */
    public record StepResult(double loss, double gradNorm) {
        /** Whether the parameters were updated: a step with a non-finite loss or gradient changes nothing. */
        public boolean applied() {
            return Double.isFinite(loss) && Double.isFinite(gradNorm);
        }

        /** The error a caller raises when it gives up on non-finite steps. */
        public IllegalStateException diverged(String detail) {
            return new IllegalStateException("training diverged: loss " + loss + ", gradient norm " + gradNorm
                    + detail + " (lower the learning rate)");
        }
    }

    private Trainer() {
    }

    /**
     * Runs one step on a batch and updates {@code params} in place, unless the loss or the
     * gradient is not finite: then nothing is updated and {@link StepResult#applied} is false.
     *
     * @param lossFn maps (inputs, targets) arrays of shape (batch, seqLen) to a scalar loss
     * @param params the arrays to train (they must require gradients)
     */
    public static StepResult step(LossFunction lossFn, Map<String, NDArray> params, AdamW optimizer,
                                  long[][] batch, int batchSize, int seqLen, double lr, double gradClip) {
        return step(lossFn, params, optimizer, batch, batchSize, seqLen, name -> lr, gradClip);
    }

    /**
     * The same with a learning rate per parameter: {@code lrOf} maps a name of {@code params} to
     * its rate (adaptation trains LoRA matrices and router scales at different rates).
     */
    public static StepResult step(LossFunction lossFn, Map<String, NDArray> params, AdamW optimizer,
                                  long[][] batch, int batchSize, int seqLen, ToDoubleFunction<String> lrOf,
                                  double gradClip) {
        double loss;
        double norm;
        try (NDScope scope = new NDScope(); NDManager m = NDManager.newBaseManager()) {
            scope.suppressNotUsedWarning();
            NDArray inputs = m.create(batch[0], new Shape(batchSize, seqLen));
            NDArray targets = m.create(batch[1], new Shape(batchSize, seqLen));
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray l = lossFn.loss(inputs, targets);
                gc.backward(l);
                loss = l.getFloat();
            }
            double sq = 0;
            for (NDArray p : params.values()) {
                NDArray g = p.getGradient();
                sq += g.square().sum().getFloat();
            }
            norm = Math.sqrt(sq);
        }
        StepResult result = new StepResult(loss, norm);
        if (!result.applied()) {
            // the engine accumulates gradients: clear them so the next step starts clean
            try (NDScope scope = new NDScope()) { // frees the gradient handles taken here
                scope.suppressNotUsedWarning();
                params.values().forEach(p -> AdamW.clear(p.getGradient()));
            }
            return result; // the caller decides whether one bad step ends the run
        }
        double scale = norm > gradClip ? gradClip / (norm + 1e-6) : 1.0;
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            optimizer.update(params, lrOf, scale);
        }
        return result;
    }

    /** Mean loss over validation windows, without building a gradient graph. */
    public static double evaluate(LossFunction lossFn, long[][] windows, int count, int seqLen, int batchSize) {
        double sum = 0;
        int batches = 0;
        for (int start = 0; start < count; start += batchSize) {
            int n = Math.min(batchSize, count - start);
            try (NDScope scope = new NDScope(); NDManager m = NDManager.newBaseManager()) {
                scope.suppressNotUsedWarning();
                long[] in = java.util.Arrays.copyOfRange(windows[0], start * seqLen, (start + n) * seqLen);
                long[] out = java.util.Arrays.copyOfRange(windows[1], start * seqLen, (start + n) * seqLen);
                NDArray l = lossFn.loss(m.create(in, new Shape(n, seqLen)), m.create(out, new Shape(n, seqLen)));
                sum += l.getFloat() * n;
                batches += n;
            }
        }
        return sum / batches;
    }

    /** A differentiable training objective over (batch, seqLen) inputs and targets. */
    @FunctionalInterface
    public interface LossFunction {
        NDArray loss(NDArray inputs, NDArray targets);
    }
}
