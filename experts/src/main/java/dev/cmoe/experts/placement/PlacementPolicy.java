package dev.cmoe.experts.placement;

import java.util.List;

/**
 * How the head re-places routed experts when it rebalances: from where they are now and how many
 * tokens each received, to where they should be. The head uses {@link DefaultPlacement} (greedy
 * moves, no new replicas) unless told to use {@link LoadAwarePlacement} (EPLB: replicates the hot
 * experts into spare slots and re-packs every layer).
 */
@FunctionalInterface
public interface PlacementPolicy {

    /**
     * A plan over {@code devices} (the live ones) for every (layer, expert).
     *
     * @param current where experts are now, restricted to live devices; null before the first placement
     * @param load (layers, experts) measured tokens per expert; all positive
     * @param expertBytes device memory one expert takes, to respect each device's budget
     */
    PlacementPlan place(PlacementPlan current, List<PlacementPlan.Device> devices, double[][] load, long expertBytes);
}
