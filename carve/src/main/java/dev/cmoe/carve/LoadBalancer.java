package dev.cmoe.carve;

import dev.cmoe.model.moe.BiasRule;
import dev.cmoe.model.moe.Routing;
import java.util.function.IntConsumer;

/**
 * Training-free load balancing: the auxiliary-loss-free bias update (b_j −= γ above the mean
 * load, += γ below) run over a layer's calibration tokens instead of fine-tuning batches. Only b
 * moves, and b only enters the selection key s' + b: the output weights g = 1 + s'·u and every
 * expert weight stay exactly as carved.
 */
final class LoadBalancer {
    /**
     * @param bias the final b (N_r)
     * @param loadsBefore tokens per expert with b = the starting bias
     * @param loadsAfter tokens per expert with the final b
     */
    record Result(float[] bias, long[] loadsBefore, long[] loadsAfter) {
        double imbalanceBefore() {
            return imbalance(loadsBefore);
        }

        double imbalanceAfter() {
            return imbalance(loadsAfter);
        }
    }

    private LoadBalancer() {
    }

    /**
     * Runs {@code steps} rounds; each counts the selections of all calibration tokens under the
     * current b and moves b by γ towards the mean load.
     *
     * @param probs (tokens, N_r) the router's s' on the calibration tokens (fixed: b does not change them)
     * @param scale (N_r) u
     * @param bias (N_r) the starting b
     */
    static Result balance(float[] probs, int tokens, int nActive, float[] scale, float[] bias, int steps,
                          double gamma, IntConsumer progress) {
        float[] b = bias.clone();
        long[] before = Routing.select(probs, tokens, nActive, b, scale).loads();
        long[] loads = before;
        for (int step = 0; step < steps; step++) {
            BiasRule.update(b, loads, gamma);
            loads = Routing.select(probs, tokens, nActive, b, scale).loads();
            progress.accept(step + 1);
        }
        return new Result(b, before, loads);
    }

    /**
     * The same sign rule with γ falling linearly from {@code gamma} towards 0 over the rounds, and
     * the b of the round with the lowest imbalance kept. A fixed γ leaves b circling the balance
     * point by ±γ and stops wherever the last round left it; a falling γ settles, and keeping the
     * best round means more rounds can never end worse than fewer.
     */
    static Result balanceAnnealed(float[] probs, int tokens, int nActive, float[] scale, float[] bias, int steps,
                                  double gamma, IntConsumer progress) {
        float[] b = bias.clone();
        long[] before = Routing.select(probs, tokens, nActive, b, scale).loads();
        long[] loads = before;
        float[] best = b.clone();
        long[] bestLoads = before;
        for (int step = 0; step < steps; step++) {
            BiasRule.update(b, loads, gamma * (steps - step) / steps);
            loads = Routing.select(probs, tokens, nActive, b, scale).loads();
            if (imbalance(loads) < imbalance(bestLoads)) {
                best = b.clone();
                bestLoads = loads;
            }
            progress.accept(step + 1);
        }
        return new Result(best, before, bestLoads);
    }

    /** max load / mean load; 1 is perfectly balanced. */
    static double imbalance(long[] loads) {
        return BiasRule.imbalance(loads);
    }
}
