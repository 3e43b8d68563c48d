package dev.cmoe.experts.placement;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * EPLB's second step: puts every replica on a device so that, layer by layer, the busiest
 * device has as little work as possible, within each device's memory and slot limits and never
 * with two replicas of one expert on one device.
 *
 * <p>The objective is per layer because a step runs the layers in order and each layer waits
 * for its slowest device: the step costs Σ over layers of the layer's maximum device load.
 *
 * <p>Two starts are each improved by local search and the cheaper result is kept:
 * <ul>
 *   <li>greedy: replicas heaviest first, each onto the device with the least load in its layer
 *       (ties: least total load, fewest replicas) that has room and does not hold the expert;</li>
 *   <li>round-robin: the layout an operator would write by hand. Greedy packing is only a 4/3
 *       approximation and can lose to a lucky round-robin on some inputs; improving both makes
 *       the plan never worse than round-robin.</li>
 * </ul>
 * The local search repeatedly moves one replica off a layer's busiest device, or swaps it with a
 * lighter replica of another device, when that leaves both devices below the old maximum.
 */
final class Packing {
    /** Loads are shares in [0, 1]; differences below this are rounding, not improvements. */
    private static final double EPS = 1e-12;

    private final int devices;
    private final int layers;
    private final int experts;
    private final double[][] weight; // (layers, experts): load of one replica = share / replicas
    private final long[][] bytes; // (layers, experts)
    private final int[][] replicas; // (layers, experts)
    private final long[] memoryCap; // per device; Long.MAX_VALUE = unlimited
    private final int[] slotCap; // per device; Integer.MAX_VALUE = unlimited

    Packing(ExpertLoads loads, ExpertMemory memory, int[][] replicas, long[] memoryCap, int[] slotCap) {
        this.devices = memoryCap.length;
        this.layers = loads.layers();
        this.experts = loads.experts();
        this.replicas = replicas;
        this.bytes = memory.bytes();
        this.memoryCap = memoryCap;
        this.slotCap = slotCap;
        this.weight = new double[layers][experts];
        for (int l = 0; l < layers; l++) {
            for (int e = 0; e < experts; e++) {
                weight[l][e] = loads.share(l, e) / replicas[l][e];
            }
        }
    }

    /** The chosen layout. */
    Layout pack() {
        Layout greedy = improve(greedy());
        Layout roundRobin = roundRobin();
        if (roundRobin == null) {
            return greedy; // memory or slot limits rule round-robin out
        }
        roundRobin = improve(roundRobin);
        return roundRobin.cheaperThan(greedy) ? roundRobin : greedy;
    }

    /** Heaviest replica first onto the least-loaded device of its layer that can take it. */
    Layout greedy() {
        Layout layout = new Layout();
        List<int[]> items = new ArrayList<>(); // {layer, expert}, one per replica
        for (int l = 0; l < layers; l++) {
            for (int e = 0; e < experts; e++) {
                for (int k = 0; k < replicas[l][e]; k++) {
                    items.add(new int[] {l, e});
                }
            }
        }
        items.sort(Comparator.<int[]>comparingDouble(i -> -weight[i[0]][i[1]])
                .thenComparingInt(i -> i[0]).thenComparingInt(i -> i[1]));
        for (int[] item : items) {
            int l = item[0];
            int e = item[1];
            int best = -1;
            for (int d = 0; d < devices; d++) {
                if (layout.canHost(l, e, d) && (best < 0 || layout.lessLoaded(l, d, best))) {
                    best = d;
                }
            }
            if (best < 0) {
                best = layout.makeRoom(l, e);
            }
            layout.place(l, e, best);
        }
        return layout;
    }

    /** Replicas in (layer, expert) order dealt to the devices in turn; null when limits forbid it. */
    Layout roundRobin() {
        Layout layout = new Layout();
        int next = 0;
        for (int l = 0; l < layers; l++) {
            for (int e = 0; e < experts; e++) {
                for (int k = 0; k < replicas[l][e]; k++) {
                    int d = -1;
                    for (int step = 0; step < devices && d < 0; step++) {
                        int candidate = (next + step) % devices;
                        if (layout.canHost(l, e, candidate)) {
                            d = candidate;
                        }
                    }
                    if (d < 0) {
                        return null;
                    }
                    layout.place(l, e, d);
                    next = (d + 1) % devices;
                }
            }
        }
        return layout;
    }

    /** Local search, layer by layer, until no move or swap lowers the layer's busiest device. */
    Layout improve(Layout layout) {
        for (int l = 0; l < layers; l++) {
            // each accepted change lowers the layer's sorted load vector, so this ends; the bound is a safety net
            int limit = 64 * (experts + devices) * Math.max(1, maxReplicas(l));
            for (int round = 0; round < limit && layout.improveOnce(l); round++) {
                // improveOnce did the work
            }
        }
        return layout;
    }

    private int maxReplicas(int layer) {
        return Arrays.stream(replicas[layer]).max().orElse(1);
    }

    /** An assignment of replicas to devices with the running sums the search needs. */
    final class Layout {
        final boolean[][][] holds = new boolean[layers][experts][devices];
        final double[][] layerLoad = new double[layers][devices];
        final double[] totalLoad = new double[devices];
        final long[] used = new long[devices];
        final int[] count = new int[devices];
        @SuppressWarnings("unchecked")
        final List<Integer>[][] on = new List[layers][devices]; // experts of a layer hosted by a device

        Layout() {
            for (List<Integer>[] row : on) {
                for (int d = 0; d < devices; d++) {
                    row[d] = new ArrayList<>();
                }
            }
        }

        boolean canHost(int l, int e, int d) {
            return !holds[l][e][d] && count[d] < slotCap[d] && fits(d, bytes[l][e]);
        }

        private boolean fits(int d, long extra) {
            return memoryCap[d] == Long.MAX_VALUE || used[d] + extra <= memoryCap[d];
        }

        /** Greedy's device order: least load in the layer, then least total load, then fewest replicas. */
        boolean lessLoaded(int l, int d, int than) {
            int c = Double.compare(layerLoad[l][d], layerLoad[l][than]);
            if (c == 0) {
                c = Double.compare(totalLoad[d], totalLoad[than]);
            }
            if (c == 0) {
                c = Integer.compare(count[d], count[than]);
            }
            return c < 0;
        }

        void place(int l, int e, int d) {
            holds[l][e][d] = true;
            layerLoad[l][d] += weight[l][e];
            totalLoad[d] += weight[l][e];
            used[d] += bytes[l][e];
            count[d]++;
            on[l][d].add(e);
        }

        void remove(int l, int e, int d) {
            holds[l][e][d] = false;
            layerLoad[l][d] -= weight[l][e];
            totalLoad[d] -= weight[l][e];
            used[d] -= bytes[l][e];
            count[d]--;
            on[l][d].remove(Integer.valueOf(e));
        }

        /**
         * Every device with room already holds (l, e): moves the lightest replica it can from a
         * device that does not hold (l, e) to one with room, and returns the device so freed. Greedy
         * packing ends up here only when memory or slots are tight near the end.
         */
        int makeRoom(int l, int e) {
            int bestFrom = -1;
            int bestTo = -1;
            int bestLayer = -1;
            int bestExpert = -1;
            for (int from = 0; from < devices; from++) {
                if (holds[l][e][from]) {
                    continue;
                }
                for (int l2 = 0; l2 < layers; l2++) {
                    for (int e2 : on[l2][from]) {
                        boolean freesRoom = memoryCap[from] == Long.MAX_VALUE
                                || used[from] - bytes[l2][e2] + bytes[l][e] <= memoryCap[from];
                        if (!freesRoom || bestLayer >= 0 && weight[l2][e2] >= weight[bestLayer][bestExpert]) {
                            continue;
                        }
                        for (int to = 0; to < devices; to++) {
                            if (to != from && canHost(l2, e2, to)) {
                                bestFrom = from;
                                bestTo = to;
                                bestLayer = l2;
                                bestExpert = e2;
                                break;
                            }
                        }
                    }
                }
            }
            if (bestFrom < 0) {
                throw new IllegalArgumentException("cannot place a replica of expert (" + l + ", " + e + ") ("
                        + bytes[l][e] + " bytes): every device with room left already holds it; give the devices"
                        + " more memory or slots, or use fewer spare slots");
            }
            remove(bestLayer, bestExpert, bestFrom);
            place(bestLayer, bestExpert, bestTo);
            return bestFrom;
        }

        /** One move or swap that lowers layer l's busiest device; false when there is none. */
        boolean improveOnce(int l) {
            int top = 0;
            for (int d = 1; d < devices; d++) {
                if (layerLoad[l][d] > layerLoad[l][top]) {
                    top = d;
                }
            }
            double max = layerLoad[l][top];
            double bestPeak = max - EPS; // accept only changes that leave both devices below this
            int bestX = -1;
            int bestY = -1;
            int bestD = -1;
            for (int x : on[l][top]) {
                double wx = weight[l][x];
                for (int d = 0; d < devices; d++) {
                    if (d == top || holds[l][x][d]) {
                        continue;
                    }
                    // move x to d
                    double peak = Math.max(max - wx, layerLoad[l][d] + wx);
                    if (peak < bestPeak && count[d] < slotCap[d] && fits(d, bytes[l][x])) {
                        bestPeak = peak;
                        bestX = x;
                        bestY = -1;
                        bestD = d;
                    }
                    // swap x with a lighter replica y of d
                    for (int y : on[l][d]) {
                        double wy = weight[l][y];
                        if (wy >= wx || holds[l][y][top]) {
                            continue;
                        }
                        double swapPeak = Math.max(max - wx + wy, layerLoad[l][d] + wx - wy);
                        if (swapPeak < bestPeak && fits(d, bytes[l][x] - bytes[l][y])
                                && fits(top, bytes[l][y] - bytes[l][x])) {
                            bestPeak = swapPeak;
                            bestX = x;
                            bestY = y;
                            bestD = d;
                        }
                    }
                }
            }
            if (bestX < 0) {
                return false;
            }
            remove(l, bestX, top);
            if (bestY >= 0) {
                remove(l, bestY, bestD);
                place(l, bestY, top);
            }
            place(l, bestX, bestD);
            return true;
        }

        /** Σ over layers of the busiest device's load: what a step waits for. */
        double stepCost() {
            double sum = 0;
            for (double[] row : layerLoad) {
                sum += Arrays.stream(row).max().orElse(0);
            }
            return sum;
        }

        double maxTotal() {
            return Arrays.stream(totalLoad).max().orElse(0);
        }

        boolean cheaperThan(Layout other) {
            double a = stepCost();
            double b = other.stepCost();
            if (Math.abs(a - b) > 1e-9) {
                return a < b;
            }
            return maxTotal() < other.maxTotal() - 1e-9;
        }

        /** Device indices of each expert's replicas, ascending. */
        int[][][] hosts() {
            int[][][] out = new int[layers][experts][];
            for (int l = 0; l < layers; l++) {
                for (int e = 0; e < experts; e++) {
                    int[] ds = new int[replicas[l][e]];
                    int k = 0;
                    for (int d = 0; d < devices; d++) {
                        if (holds[l][e][d]) {
                            ds[k++] = d;
                        }
                    }
                    out[l][e] = ds;
                }
            }
            return out;
        }
    }
}
