package dev.cmoe.server.moe;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;

/**
 * How a router shares one expert's rows of a step among its replicas: water-filling over the
 * replicas' devices, so that the busiest device (which the layer waits for) gets as few rows as
 * possible. A hot expert's rows are split across its replicas within the step, which is what
 * makes replicas pay off for a skewed batch (a prefill of repeated tokens sends every row to the
 * same experts); parts below {@link #MIN_PART_ROWS} are not worth their message and engine call.
 */
final class RowSplit {
    /** The fewest rows worth a part of their own. */
    static final int MIN_PART_ROWS = 4;

    /** {@code rows} of the expert's rows for {@code replica}. */
    record Share(Replica replica, int rows) {
    }

    private RowSplit() {
    }

    /**
     * Splits {@code n} rows over {@code candidates} given each device's outstanding rows; ties
     * go to the replica with less of its own work, then to the one {@code start} positions on
     * (callers rotate it, so that equally idle replicas take turns).
     *
     * @return the shares in order, each ≥ 1 row and ≥ {@link #MIN_PART_ROWS} when there are several; empty without candidates
     */
    static List<Share> split(int n, List<Replica> candidates, Map<String, Integer> deviceWork,
                             Map<?, Integer> ownWork, int start) {
        if (candidates.isEmpty() || n <= 0) {
            return List.of();
        }
        List<Replica> byLoad = new ArrayList<>(candidates.size());
        for (int i = 0; i < candidates.size(); i++) {
            byLoad.add(candidates.get((start + i) % candidates.size()));
        }
        // stable: the rotation decides between replicas equal on both counts
        byLoad.sort(Comparator.<Replica>comparingInt(r -> deviceWork.getOrDefault(r.device(), 0))
                .thenComparingInt(r -> ownWork.getOrDefault(r.ref(), 0)));
        long[] w = new long[byLoad.size()];
        for (int i = 0; i < w.length; i++) {
            w[i] = deviceWork.getOrDefault(byLoad.get(i).device(), 0);
        }
        int k = Math.min(w.length, Math.max(1, n / MIN_PART_ROWS));
        int[] shares = fill(n, w, k);
        // fewer parts while the smallest is below the minimum (water-filling may leave it tiny)
        while (k > 1 && min(shares, k) < MIN_PART_ROWS) {
            k--;
            shares = fill(n, w, k);
        }
        List<Share> out = new ArrayList<>(k);
        for (int i = 0; i < k; i++) {
            if (shares[i] > 0) {
                out.add(new Share(byLoad.get(i), shares[i]));
            }
        }
        return out;
    }

    /**
     * Water-fills {@code n} rows into the first {@code k} bins (loads ascending): each bin is
     * raised to a common level, bins already above it get nothing; integer shares sum to n.
     */
    private static int[] fill(int n, long[] w, int k) {
        int used = k;
        double level;
        while (true) {
            long sum = 0;
            for (int i = 0; i < used; i++) {
                sum += w[i];
            }
            level = (double) (sum + n) / used;
            if (used == 1 || w[used - 1] < level) {
                break;
            }
            used--; // the most loaded bin is above the level: it takes nothing
        }
        int[] shares = new int[k];
        int given = 0;
        for (int i = 0; i < used; i++) {
            shares[i] = (int) Math.floor(level - w[i]);
            given += shares[i];
        }
        for (int i = 0; given < n; i = (i + 1) % used) { // the remainder, one row each, least loaded first
            shares[i]++;
            given++;
        }
        return shares;
    }

    private static int min(int[] shares, int k) {
        int m = Integer.MAX_VALUE;
        for (int i = 0; i < k; i++) {
            if (shares[i] > 0) {
                m = Math.min(m, shares[i]);
            }
        }
        return m;
    }
}
