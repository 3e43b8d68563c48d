package dev.cmoe.model.moe;

import java.util.Arrays;

/**
 * The router's decision for one step, as plain Java arrays so an in-process forward, a router
 * actor and the carver's load balancer all act on exactly the same selection.
 *
 * <p>Selection is made here, in Java, from the engine's float32 probabilities s': per token the
 * N_k experts with the largest {@code s'_j + b_j} (float addition), ties to the lower expert id,
 * listed in descending order. That order is the "slot" order in which the MoE sums expert outputs.
 */
public final class Routing {
    private final int tokens;
    private final int nActive;
    private final int nRouted;
    private final int[] experts;  // (tokens, nActive): selected expert ids, best first
    private final float[] gates;  // (tokens, nActive): g = 1 + s'·u of each selection
    private final float[] probs;  // (tokens, nRouted): s' = softmax(s)
    private final int[][] rows;   // per expert: the tokens that selected it, ascending
    private final int[][] slots;  // per expert: the flat slot t·nActive + k of each of those rows

    private Routing(int tokens, int nActive, int nRouted, int[] experts, float[] gates, float[] probs) {
        this.tokens = tokens;
        this.nActive = nActive;
        this.nRouted = nRouted;
        this.experts = experts;
        this.gates = gates;
        this.probs = probs;
        int[] count = new int[nRouted];
        for (int e : experts) {
            count[e]++;
        }
        rows = new int[nRouted][];
        slots = new int[nRouted][];
        for (int j = 0; j < nRouted; j++) {
            rows[j] = new int[count[j]];
            slots[j] = new int[count[j]];
        }
        Arrays.fill(count, 0);
        for (int s = 0; s < experts.length; s++) {
            int j = experts[s];
            rows[j][count[j]] = s / nActive;
            slots[j][count[j]++] = s;
        }
    }

    /**
     * Selects experts from router probabilities.
     *
     * @param probs (tokens, nRouted) s', row-major
     * @param bias (nRouted) b, added for selection only
     * @param scale (nRouted) u, giving the output weights g = 1 + s'·u
     */
    public static Routing select(float[] probs, int tokens, int nActive, float[] bias, float[] scale) {
        int nRouted = bias.length;
        if (scale.length != nRouted || probs.length != (long) tokens * nRouted) {
            throw new IllegalArgumentException("routing needs probs (" + tokens + ", " + nRouted + "), bias and scale ("
                    + nRouted + "); got " + probs.length + ", " + bias.length + ", " + scale.length + " values");
        }
        if (nActive < 1 || nActive > nRouted) {
            throw new IllegalArgumentException("cannot select " + nActive + " of " + nRouted + " experts");
        }
        int[] experts = new int[tokens * nActive];
        float[] gates = new float[tokens * nActive];
        float[] key = new float[nRouted];
        for (int t = 0; t < tokens; t++) {
            int row = t * nRouted;
            for (int j = 0; j < nRouted; j++) {
                key[j] = probs[row + j] + bias[j];
            }
            // partial selection sort: N_k is small, and it fixes the tie order (lower id first)
            for (int k = 0; k < nActive; k++) {
                int best = -1;
                for (int j = 0; j < nRouted; j++) {
                    if (!taken(experts, t * nActive, k, j) && (best < 0 || key[j] > key[best])) {
                        best = j;
                    }
                }
                experts[t * nActive + k] = best;
                gates[t * nActive + k] = 1f + probs[row + best] * scale[best];
            }
        }
        return new Routing(tokens, nActive, nRouted, experts, gates, probs);
    }

    private static boolean taken(int[] experts, int from, int k, int j) {
        for (int i = 0; i < k; i++) {
            if (experts[from + i] == j) {
                return true;
            }
        }
        return false;
    }

    public int tokens() {
        return tokens;
    }

    public int nActive() {
        return nActive;
    }

    public int nRouted() {
        return nRouted;
    }

    /** The expert in slot {@code k} (0 = best) of token {@code t}. */
    public int expert(int t, int k) {
        return experts[t * nActive + k];
    }

    /** The output weight g of slot {@code k} of token {@code t}. */
    public float gate(int t, int k) {
        return gates[t * nActive + k];
    }

    /** s'_j of token {@code t}. */
    public float prob(int t, int j) {
        return probs[t * nRouted + j];
    }

    /** s' of every token, (tokens, N_r) row-major (a copy). */
    public float[] probs() {
        return probs.clone();
    }

    /** The tokens routed to expert {@code j}, ascending (shared array: do not modify). */
    public int[] rows(int j) {
        return rows[j];
    }

    /** For each of {@link #rows(int)}, its flat slot index t·N_k + k (shared array: do not modify). */
    public int[] slots(int j) {
        return slots[j];
    }

    /** The output weights g of expert {@code j}'s rows, in {@link #rows(int)} order. */
    public float[] gates(int j) {
        float[] g = new float[slots[j].length];
        for (int i = 0; i < g.length; i++) {
            g[i] = gates[slots[j][i]];
        }
        return g;
    }

    /** Tokens per expert: the load of this step. */
    public long[] loads() {
        long[] loads = new long[nRouted];
        for (int j = 0; j < nRouted; j++) {
            loads[j] = rows[j].length;
        }
        return loads;
    }
}
