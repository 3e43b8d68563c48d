package dev.cmoe.carve;

import dev.cmoe.model.moe.BiasRule;
import dev.cmoe.model.moe.Routing;
import java.util.Arrays;
import java.util.function.IntConsumer;

/**
 * Training-free load balancing: the auxiliary-loss-free bias update (b_j −= γ above the mean
 * load, += γ below) run over a layer's calibration tokens instead of fine-tuning batches. Only b
 * moves, and b only enters the selection key s' + b: the output weights g = 1 + s'·u and every
 * expert weight stay exactly as carved.
 */
final class LoadBalancer {
    /** How b is searched for; the name goes into the carved config's {@code balance.rule}. */
    enum Rule {
        /** The reference's: ±γ towards the mean load every round, the last round kept. */
        SIGN,
        /** The sign rule with γ falling to 0 over the rounds, the best round kept. */
        ANNEALED,
        /** Per-expert exact thresholds swept over the experts, the best sweep kept; γ is not used. */
        QUANTILE
    }

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

    /** Runs {@code rule} for {@code steps} rounds (sweeps over the experts for {@link Rule#QUANTILE}). */
    static Result balance(Rule rule, float[] probs, int tokens, int nActive, float[] scale, float[] bias, int steps,
                          double gamma, IntConsumer progress) {
        return switch (rule) {
            case SIGN -> balance(probs, tokens, nActive, scale, bias, steps, gamma, progress);
            case ANNEALED -> balanceAnnealed(probs, tokens, nActive, scale, bias, steps, gamma, progress);
            case QUANTILE -> balanceQuantile(probs, tokens, nActive, scale, bias, steps, progress);
        };
    }

    /**
     * Sets each expert's b_j in turn to the value that gives it exactly the mean load while the
     * others' b stay fixed, and sweeps over the experts {@code sweeps} times, keeping the sweep
     * with the lowest imbalance. Expert j is selected on token t exactly when s'_tj + b_j exceeds
     * κ_t, the N_k-th largest key s' + b of the other experts, so its load is the number of tokens
     * with κ_t − s'_tj below b_j and the mean load is a quantile of those margins. Unlike a fixed
     * step γ this needs no step size: it works whether the router's s' are flat or nearly one-hot
     * (a carved router's softmax is often peaked, so the keys of the runners-up differ by far less
     * than any useful γ).
     */
    static Result balanceQuantile(float[] probs, int tokens, int nActive, float[] scale, float[] bias, int sweeps,
                                  IntConsumer progress) {
        int nRouted = bias.length;
        float[] b = bias.clone();
        long[] before = Routing.select(probs, tokens, nActive, b, scale).loads();
        if (nActive >= nRouted || tokens == 0) {
            return new Result(b, before, before);
        }
        float[] best = b.clone();
        long[] bestLoads = before;
        int target = (int) Math.round((double) tokens * nActive / nRouted);
        double[] margin = new double[tokens];
        float[] top = new float[nActive];
        for (int sweep = 0; sweep < sweeps; sweep++) {
            for (int j = 0; j < nRouted; j++) {
                for (int t = 0; t < tokens; t++) {
                    margin[t] = (double) kthLargestOfOthers(probs, t * nRouted, nRouted, j, b, top)
                            - probs[t * nRouted + j];
                }
                Arrays.sort(margin);
                // selected on the `target` tokens of smallest margin: b_j between the target-th and the next
                double lo = target == 0 ? margin[0] - 1 : margin[target - 1];
                double hi = target == tokens ? margin[tokens - 1] + 1 : margin[target];
                b[j] = (float) ((lo + hi) / 2);
            }
            long[] loads = Routing.select(probs, tokens, nActive, b, scale).loads();
            if (imbalance(loads) < imbalance(bestLoads)) {
                best = b.clone();
                bestLoads = loads;
            }
            progress.accept(sweep + 1);
        }
        return new Result(best, before, bestLoads);
    }

    /** The {@code top.length}-th largest key s' + b of one token over the experts other than {@code skip}. */
    private static float kthLargestOfOthers(float[] probs, int row, int nRouted, int skip, float[] b, float[] top) {
        int k = top.length;
        int filled = 0;
        for (int i = 0; i < nRouted; i++) {
            if (i == skip) {
                continue;
            }
            float key = probs[row + i] + b[i];
            int p;
            if (filled < k) {
                p = filled++;
            } else if (key > top[k - 1]) {
                p = k - 1; // the smallest kept key drops out
            } else {
                continue;
            }
            while (p > 0 && top[p - 1] < key) {
                top[p] = top[p - 1];
                p--;
            }
            top[p] = key;
        }
        return top[k - 1];
    }

    /** max load / mean load; 1 is perfectly balanced. */
    static double imbalance(long[] loads) {
        return BiasRule.imbalance(loads);
    }
}
