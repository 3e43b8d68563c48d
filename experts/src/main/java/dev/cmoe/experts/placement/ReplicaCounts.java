package dev.cmoe.experts.placement;

import java.util.PriorityQueue;

/**
 * EPLB's first step: how many replicas each routed expert gets. Every expert starts with one;
 * each spare slot goes, one at a time, to the expert with the highest load per replica, since
 * routers split an expert's tokens over its replicas by outstanding work and so that expert's
 * replicas are the hottest units left to split.
 *
 * <p>Slots are shared by all layers: shares of different layers are comparable (every token
 * passes every layer), and a layer with one very hot expert should get more of them than an
 * evenly loaded one.
 */
final class ReplicaCounts {
    private ReplicaCounts() {
    }

    /**
     * @param spare replicas to add beyond one per expert
     * @param maxReplicas (layers, experts) the most replicas an expert may have: the devices it fits on
     * @return (layers, experts) replica counts, each ≥ 1, summing to layers × experts + spare
     */
    static int[][] allocate(ExpertLoads loads, int spare, int[][] maxReplicas) {
        if (spare < 0) {
            throw new IllegalArgumentException("spare slots must be ≥ 0, got " + spare);
        }
        int layers = loads.layers();
        int experts = loads.experts();
        int[][] replicas = new int[layers][experts];
        // hottest load per replica first; ties by (layer, expert) so the plan is reproducible
        PriorityQueue<int[]> queue = new PriorityQueue<>((a, b) -> {
            int c = Double.compare(perReplica(loads, replicas, b), perReplica(loads, replicas, a));
            return c != 0 ? c : a[0] != b[0] ? Integer.compare(a[0], b[0]) : Integer.compare(a[1], b[1]);
        });
        for (int l = 0; l < layers; l++) {
            for (int e = 0; e < experts; e++) {
                replicas[l][e] = 1;
                if (maxReplicas[l][e] > 1) {
                    queue.add(new int[] {l, e});
                }
            }
        }
        for (int s = 0; s < spare; s++) {
            int[] hottest = queue.poll();
            if (hottest == null) {
                throw new IllegalArgumentException(spare + " spare slots are more than the experts can use: at most "
                        + s + " fit, as no device may hold two replicas of one expert");
            }
            replicas[hottest[0]][hottest[1]]++;
            if (replicas[hottest[0]][hottest[1]] < maxReplicas[hottest[0]][hottest[1]]) {
                queue.add(hottest); // re-queued with its new, lower load per replica
            }
        }
        return replicas;
    }

    private static double perReplica(ExpertLoads loads, int[][] replicas, int[] id) {
        return loads.share(id[0], id[1]) / replicas[id[0]][id[1]];
    }
}
