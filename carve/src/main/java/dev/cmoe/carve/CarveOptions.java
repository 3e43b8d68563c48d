package dev.cmoe.carve;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import java.util.Objects;

/**
 * What to carve: the S{shared}A{active}E{experts} shape, the calibration that decides it, and the
 * method. Checked on construction (alone) and by {@link #validate} (against the dense model), so
 * a bad request fails before any work with a message that names the value.
 *
 * @param shared N_s, expert groups merged into the always-on shared expert (≥ 0)
 * @param active N_k, routed experts per token (≥ 1)
 * @param experts N, groups the intermediate neurons are split into; must divide the intermediate
 *     size (no remainder rule: an uneven split is an error)
 * @param kAct K_a, neurons marked per calibration token (ATopK)
 * @param calibSamples calibration windows drawn from the text
 * @param calibSeqlen tokens per window; 0 = min(512, the model's context)
 * @param seed seeds the window draw
 * @param balanceSteps rounds of bias balancing over the calibration tokens after carving a layer
 * @param balanceGamma γ, the bias step per round
 * @param balanceSamples further windows, drawn after the calibration ones, that only the bias
 *     balancing sees: the bias has few degrees of freedom and many tokens help it hold on other
 *     text, while the clustering and the router keep the calibration's cost
 * @param method {@link Method#CMOE} reproduces the reference; {@link Method#OURS} is our variant
 * @param budgets whether the layers share the routed-expert budget out by their carving error
 *     ({@link Budgets#METHOD}: as the method does) or each selects N_k
 * @param force replace an existing output directory
 */
public record CarveOptions(int shared, int active, int experts, int kAct, int calibSamples, int calibSeqlen,
                           long seed, int balanceSteps, double balanceGamma, int balanceSamples, Method method,
                           Budgets budgets, boolean force) {

    /** How neurons are grouped and the router is built. */
    public enum Method {
        /** The reference: one balanced-assignment pass, router rows of each expert's representative neuron. */
        CMOE,
        /**
         * Our default: neurons ranked by their actual contribution |SiLU(g·x)(u·x)|·‖W_down[:, i]‖
         * (for the markers, hence the shared expert and the clustering), the reference's single
         * balanced-assignment pass, and the fitted router scaled to unit score spread; bias
         * balancing, when asked for, sets exact per-expert thresholds (the quantile rule, no γ).
         */
        OURS,
        /**
         * The previous default, kept for the ablation: the reference's scores and clustering with
         * the fitted router (per expert the member whose score best tracks the expert's output
         * norm, scaled to predict it).
         */
        FITTED,
        /** OURS with the routed neurons grouped by balanced spherical k-means on their contribution profiles. */
        PROFILES,
        /** Ablation: the routed neurons split into equal groups at random (seeded), reference router. */
        RANDOM_GROUPS,
        /** Ablation: reference grouping, router rows drawn at random (seeded unit vectors). */
        RANDOM_ROUTER;

        /**
         * Calibration windows when none are asked for: the paper's {@link #DEFAULT_SAMPLES} for the
         * reference and its ablations; twice that for {@link #OURS}, whose contribution ranking and
         * fitted router kept gaining from more tokens (carve/README.md) at about twice the carve time.
         */
        public int defaultSamples() {
            return this == OURS ? 2 * DEFAULT_SAMPLES : DEFAULT_SAMPLES;
        }
    }

    /** Routed experts per token by layer. */
    public enum Budgets {
        /** As the method does: {@link Method#OURS} shares them out by layer, the others are uniform. */
        METHOD,
        /** N_k in every layer. */
        UNIFORM,
        /**
         * Shared out over the layers by each layer's measured carving error, within the same total
         * and no layer below N_k − 1: the first layers, whose FFN writes most of the residual
         * stream, get more (carve/README.md).
         */
        ADAPTIVE
    }

    public static final int DEFAULT_K_ACT = 10;
    public static final int DEFAULT_SAMPLES = 8;
    public static final int MAX_DEFAULT_SEQLEN = 512;
    public static final double DEFAULT_GAMMA = 1e-3;
    public static final int DEFAULT_BALANCE_STEPS = 0;

    public CarveOptions {
        Objects.requireNonNull(method, "method");
        Objects.requireNonNull(budgets, "budgets");
        if (shared < 0) {
            throw new IllegalArgumentException("shared experts must not be negative, got " + shared);
        }
        if (active < 1) {
            throw new IllegalArgumentException("at least one routed expert must be active, got " + active);
        }
        if (shared + active > experts) {
            throw new IllegalArgumentException("shared + active = " + shared + " + " + active
                    + " exceeds the " + experts + " experts");
        }
        if (kAct < 1) {
            throw new IllegalArgumentException("kAct (K_a) must be at least 1, got " + kAct);
        }
        if (calibSamples < 1) {
            throw new IllegalArgumentException("calibration samples must be at least 1, got " + calibSamples);
        }
        if (calibSeqlen < 0) {
            throw new IllegalArgumentException("calibration seqlen must be positive (or 0 for the default), got "
                    + calibSeqlen);
        }
        if (balanceSteps < 0) {
            throw new IllegalArgumentException("balance steps must not be negative, got " + balanceSteps);
        }
        if (!(balanceGamma > 0) || Double.isInfinite(balanceGamma)) {
            throw new IllegalArgumentException("balance gamma must be positive and finite, got " + balanceGamma);
        }
        if (balanceSamples < 0) {
            throw new IllegalArgumentException("balance samples must not be negative, got " + balanceSamples);
        }
    }

    /** S{shared}A{active}E{experts} with every other setting at its default (the paper's). */
    public static CarveOptions of(int shared, int active, int experts) {
        return new CarveOptions(shared, active, experts, DEFAULT_K_ACT, DEFAULT_SAMPLES, 0, 0,
                DEFAULT_BALANCE_STEPS, DEFAULT_GAMMA, 0, Method.CMOE, Budgets.METHOD, false);
    }

    public CarveOptions withMethod(Method m) {
        return new CarveOptions(shared, active, experts, kAct, calibSamples, calibSeqlen, seed, balanceSteps,
                balanceGamma, balanceSamples, m, budgets, force);
    }

    public CarveOptions withCalibration(int samples, int seqlen, long newSeed) {
        return new CarveOptions(shared, active, experts, kAct, samples, seqlen, newSeed, balanceSteps,
                balanceGamma, balanceSamples, method, budgets, force);
    }

    public CarveOptions withBalance(int steps, double gamma) {
        return new CarveOptions(shared, active, experts, kAct, calibSamples, calibSeqlen, seed, steps, gamma,
                balanceSamples, method, budgets, force);
    }

    /** The same with {@code samples} windows for the bias balancing alone (see {@link #balanceSamples}). */
    public CarveOptions withBalanceSamples(int samples) {
        return new CarveOptions(shared, active, experts, kAct, calibSamples, calibSeqlen, seed, balanceSteps,
                balanceGamma, samples, method, budgets, force);
    }

    public CarveOptions withKAct(int k) {
        return new CarveOptions(shared, active, experts, k, calibSamples, calibSeqlen, seed, balanceSteps,
                balanceGamma, balanceSamples, method, budgets, force);
    }

    public CarveOptions withBudgets(Budgets b) {
        return new CarveOptions(shared, active, experts, kAct, calibSamples, calibSeqlen, seed, balanceSteps,
                balanceGamma, balanceSamples, method, b, force);
    }

    public CarveOptions withForce(boolean f) {
        return new CarveOptions(shared, active, experts, kAct, calibSamples, calibSeqlen, seed, balanceSteps,
                balanceGamma, balanceSamples, method, budgets, f);
    }

    /**
     * Windows drawn from the calibration text: the calibration's, then the balancing's (none
     * unless balancing runs). The first {@link #calibSamples} are the same whatever the rest.
     */
    public int drawnSamples() {
        return calibSamples + (balanceSteps > 0 ? balanceSamples : 0);
    }

    /** N_r = N − N_s. */
    public int routed() {
        return experts - shared;
    }

    /** The window length actually used for {@code config}. */
    public int seqlen(ModelConfig config) {
        return calibSeqlen > 0 ? calibSeqlen : Math.min(MAX_DEFAULT_SEQLEN, config.contextLength());
    }

    /** Checks the options against the dense model to be carved. */
    public void validate(ModelConfig config) {
        if (MoeConfig.of(config).isPresent()) {
            throw new IllegalArgumentException("the model is already carved (its config.json has a '"
                    + MoeConfig.KEY + "' block); carve a dense model");
        }
        int inter = config.intermediateSize();
        if (inter % experts != 0) {
            throw new IllegalArgumentException(experts + " experts do not divide the intermediate size " + inter
                    + " (remainder " + inter % experts + "); choose a divisor of " + inter);
        }
        if (kAct > inter) {
            throw new IllegalArgumentException("kAct (K_a) " + kAct + " exceeds the intermediate size " + inter);
        }
        if (seqlen(config) > config.contextLength()) {
            throw new IllegalArgumentException("calibration seqlen " + calibSeqlen + " exceeds the model's context of "
                    + config.contextLength());
        }
    }
}
