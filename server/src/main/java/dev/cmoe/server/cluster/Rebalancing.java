package dev.cmoe.server.cluster;

import dev.cmoe.experts.placement.DefaultPlacement;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.experts.placement.PlacementPolicy;
import dev.cmoe.server.metrics.ServerMetrics;
import java.util.List;

/**
 * The arithmetic of rebalancing, apart from the coordinator's messaging: the load measured in a
 * window of the routers' token counters, whether it is uneven enough to act on, and what a new
 * plan would change.
 */
final class Rebalancing {
    private final ServerMetrics metrics;
    private final int layers;
    private final int routed;
    private double[][] baseline; // (layers, routed) token counts at the window's start

    Rebalancing(ServerMetrics metrics, int layers, int routed) {
        this.metrics = metrics;
        this.layers = layers;
        this.routed = routed;
        this.baseline = counts();
    }

    /** Starts a new measuring window (after a rebalance). */
    void restartWindow() {
        baseline = counts();
    }

    /**
     * (layers, routed) tokens per expert since the window began, plus one each: an idle window
     * weighs experts equally, so a rebalance without traffic still evens out expert counts.
     */
    double[][] windowLoad() {
        double[][] now = counts();
        for (int l = 0; l < layers; l++) {
            for (int j = 0; j < routed; j++) {
                now[l][j] = now[l][j] - baseline[l][j] + 1;
            }
        }
        return now;
    }

    /** Routed tokens counted in the window. */
    double windowTokens() {
        double[][] now = counts();
        double sum = 0;
        for (int l = 0; l < layers; l++) {
            for (int j = 0; j < routed; j++) {
                sum += now[l][j] - baseline[l][j];
            }
        }
        return sum;
    }

    /**
     * The measured imbalance of {@code current} when the window holds at least {@code minTokens}
     * tokens and it exceeds {@code threshold}; NaN otherwise (nothing to do).
     */
    double imbalanceToAct(PlacementPlan current, double threshold, long minTokens) {
        if (current == null || threshold <= 0 || windowTokens() < minTokens) {
            return Double.NaN;
        }
        double imbalance = DefaultPlacement.imbalance(current, windowLoad());
        return imbalance > threshold ? imbalance : Double.NaN;
    }

    /**
     * What moving from {@code current} to {@code given} (or, when null, to the policy's plan over
     * the live devices) changes, validated against the live devices; an error result when it
     * cannot be applied.
     */
    static PlacementCoordinator.RebalanceResult propose(PlacementState state, PlacementPlan current,
                                                        PlacementPlan given, PlacementPolicy policy, double[][] load) {
        PlacementPlan next;
        try {
            next = given != null ? given : policy.place(current, state.liveDevices(), load,
                    state.shape().expertBytes());
        } catch (RuntimeException e) {
            return failed("the placement policy failed: " + e.getMessage());
        }
        String invalid = state.validate(next);
        if (invalid != null) {
            return failed(invalid);
        }
        int added = 0;
        int removed = 0;
        for (PlacementPlan.Assignment a : next.assignments()) {
            List<String> was = current.devicesFor(a.id());
            added += (int) a.devices().stream().filter(d -> !was.contains(d)).count();
            removed += (int) was.stream().filter(d -> !a.devices().contains(d)).count();
        }
        return new PlacementCoordinator.RebalanceResult(next, added, removed, DefaultPlacement.imbalance(current, load),
                DefaultPlacement.imbalance(next, load), "");
    }

    static PlacementCoordinator.RebalanceResult failed(String why) {
        return new PlacementCoordinator.RebalanceResult(null, 0, 0, 0, 0, why);
    }

    private double[][] counts() {
        double[][] c = new double[layers][routed];
        for (int l = 0; l < layers; l++) {
            for (int j = 0; j < routed; j++) {
                c[l][j] = metrics.expertTokens(l, j).count();
            }
        }
        return c;
    }
}
