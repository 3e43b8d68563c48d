package dev.cmoe.model.moe;

/**
 * CMoE's auxiliary-loss-free load balancing: after a batch, every routed expert whose token
 * count is above the mean load gets its bias b lowered by γ, every one below it raised by γ.
 * Written once so the carver's training-free balancing and the adaptation's per-step update
 * move b the same way. b only enters the selection key s' + b, never an output weight.
 */
public final class BiasRule {
    private BiasRule() {
    }

    /**
     * Moves {@code bias} in place by ±γ towards the mean of {@code loads}.
     *
     * @param bias (N_r) b
     * @param loads (N_r) tokens routed to each expert in the batch
     */
    public static void update(float[] bias, long[] loads, double gamma) {
        if (bias.length != loads.length) {
            throw new IllegalArgumentException("bias has " + bias.length + " values but loads " + loads.length);
        }
        long total = 0;
        for (long l : loads) {
            total += l;
        }
        double mean = (double) total / loads.length;
        for (int j = 0; j < bias.length; j++) {
            if (loads[j] > mean) {
                bias[j] -= (float) gamma;
            } else if (loads[j] < mean) {
                bias[j] += (float) gamma;
            }
        }
    }

    /** max load / mean load; 1 is perfectly balanced (and the value for no tokens). */
    public static double imbalance(long[] loads) {
        long max = 0;
        long sum = 0;
        for (long l : loads) {
            max = Math.max(max, l);
            sum += l;
        }
        return sum == 0 ? 1 : max / ((double) sum / loads.length);
    }
}
