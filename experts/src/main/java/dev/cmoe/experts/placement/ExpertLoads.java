package dev.cmoe.experts.placement;

import java.util.Arrays;

/**
 * How much work each routed expert gets: its share of its layer's routed (token, expert) pairs.
 * The planner balances these shares; where they came from (a carve report, a live server) is
 * kept only to tell the operator.
 */
public final class ExpertLoads {
    private final String source;
    private final double[][] shares; // (layers, experts), each row sums to 1
    private final double[] tokens; // per layer: routed (token, expert) pairs counted

    private ExpertLoads(String source, double[][] shares, double[] tokens) {
        this.source = source;
        this.shares = shares;
        this.tokens = tokens;
    }

    /**
     * Loads from raw counts (tokens routed to each expert), normalised per layer.
     *
     * @param counts (layers, experts): every value finite and ≥ 0, every layer with some tokens
     */
    public static ExpertLoads ofCounts(String source, double[][] counts) {
        if (counts.length == 0 || counts[0].length == 0) {
            throw new IllegalArgumentException("loads from " + source + " cover no experts");
        }
        int experts = counts[0].length;
        double[][] shares = new double[counts.length][];
        double[] tokens = new double[counts.length];
        for (int l = 0; l < counts.length; l++) {
            if (counts[l].length != experts) {
                throw new IllegalArgumentException("loads from " + source + ": layer " + l + " has "
                        + counts[l].length + " experts, layer 0 has " + experts);
            }
            double total = 0;
            for (int e = 0; e < experts; e++) {
                double c = counts[l][e];
                if (!Double.isFinite(c) || c < 0) {
                    throw new IllegalArgumentException("loads from " + source + ": expert (" + l + ", " + e
                            + ") has load " + c + ", expected a finite count ≥ 0");
                }
                total += c;
            }
            if (total <= 0) {
                throw new IllegalArgumentException("loads from " + source + ": layer " + l
                        + " has routed no tokens yet (serve some traffic first, or use --loads carve-report)");
            }
            shares[l] = new double[experts];
            for (int e = 0; e < experts; e++) {
                shares[l][e] = counts[l][e] / total;
            }
            tokens[l] = total;
        }
        return new ExpertLoads(source, shares, tokens);
    }

    /** Every expert of a layer equally loaded: for models without measurements. */
    public static ExpertLoads uniform(int layers, int experts) {
        double[][] counts = new double[layers][experts];
        for (double[] row : counts) {
            Arrays.fill(row, 1);
        }
        return ofCounts("uniform", counts);
    }

    /** Where the counts came from, e.g. {@code /models/x/carve_report.json (loadsAfter)}. */
    public String source() {
        return source;
    }

    public int layers() {
        return shares.length;
    }

    public int experts() {
        return shares[0].length;
    }

    /** Expert {@code expert}'s share of layer {@code layer}'s routed tokens, in [0, 1]. */
    public double share(int layer, int expert) {
        return shares[layer][expert];
    }

    /** Routed (token, expert) pairs counted in {@code layer}. */
    public double tokens(int layer) {
        return tokens[layer];
    }

    /** Fails with a message naming both shapes unless the loads cover exactly this model. */
    public ExpertLoads requireShape(int layers, int experts) {
        if (layers() != layers || experts() != experts) {
            throw new IllegalArgumentException("loads from " + source + " cover " + layers() + " layers × "
                    + experts() + " routed experts, but the model has " + layers + " × " + experts);
        }
        return this;
    }
}
