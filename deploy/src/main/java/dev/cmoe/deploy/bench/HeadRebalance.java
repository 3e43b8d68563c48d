package dev.cmoe.deploy.bench;

import dev.cmoe.experts.placement.ExpertLoads;
import dev.cmoe.experts.placement.ExpertMemory;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.experts.placement.Planner;
import dev.cmoe.proto.v1.AdminGrpc;
import dev.cmoe.proto.v1.RebalanceRequest;
import dev.cmoe.proto.v1.RebalanceResponse;
import io.grpc.Channel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.TimeUnit;

/**
 * The skew scenario's middle step against a cluster head: re-place the routed experts through
 * the head's {@code Admin/Rebalance}, either by the head's own policy or with an EPLB plan that
 * replicates the experts the skewed load made hot, so that the next phase shows what replicas
 * and rebalancing do to per-device balance.
 */
public final class HeadRebalance {
    /** How the new placement is chosen. */
    public enum Mode {
        /** The head's own policy over the load it measured since its last rebalance. */
        HEAD("head"),
        /** {@code cmoe plan}'s planner over the skewed phase's per-expert load, with spare replicas. */
        PLAN("plan");

        public final String label;

        Mode(String label) {
            this.label = label;
        }

        /** The mode named {@code name}; null for "none". */
        public static Mode of(String name) {
            if (name == null || name.equals("none")) {
                return null;
            }
            for (Mode m : values()) {
                if (m.label.equals(name)) {
                    return m;
                }
            }
            throw new IllegalArgumentException("--rebalance '" + name + "' is not one of none, head, plan");
        }
    }

    /**
     * What one rebalance did.
     *
     * @param headBefore the head's own estimate of device max/mean over its measured window before, {@code headAfter} after
     * @param spareSlots replicas beyond one per expert that the plan asked for (0 for the head's policy)
     * @param plan the plan in force afterwards (JSON)
     */
    public record Result(Mode mode, int replicasAdded, int replicasRemoved, double headBefore, double headAfter,
                         int spareSlots, double seconds, String placement, String plan) {
        /** One line for the verdict. */
        public String describe() {
            return String.format(Locale.ROOT, "%s rebalance (%s) applied in %.1f s: %d replicas added, %d retired",
                    mode.label, mode == Mode.PLAN ? spareSlots + " spare replicas" : "head's policy", seconds,
                    replicasAdded, replicasRemoved);
        }
    }

    private final Channel channel;
    private final Mode mode;
    private final Path model;
    private final Integer spareSlots;
    private final Duration timeout;

    /**
     * @param channel the head's channel, carrying its bearer token (Admin calls need one)
     * @param model the carved model directory, for the experts' sizes (plan mode)
     * @param spareSlots plan mode: replicas beyond one per expert; null = one per layer per device beyond the first
     */
    public HeadRebalance(Channel channel, Mode mode, Path model, Integer spareSlots, Duration timeout) {
        if (spareSlots != null && spareSlots < 0) {
            throw new IllegalArgumentException("--spare-slots must be >= 0, got " + spareSlots);
        }
        if (mode == Mode.PLAN && model == null) {
            throw new IllegalArgumentException("--rebalance plan sizes experts from the carved model: give --model DIR"
                    + " (the head's model directory)");
        }
        this.channel = channel;
        this.mode = mode;
        this.model = model;
        this.spareSlots = spareSlots;
        this.timeout = timeout;
    }

    public Mode mode() {
        return mode;
    }

    /** Re-places the head's experts for the load {@code measured} (the skewed phase) and waits until they serve. */
    public Result apply(ExpertLoad measured) {
        long start = System.nanoTime();
        RebalanceRequest.Builder request = RebalanceRequest.newBuilder();
        int spare = 0;
        if (mode == Mode.PLAN) {
            // the live devices, as the head sees them: its dry run answers with a plan over them
            PlacementPlan current = PlacementPlan.fromJson(admin().rebalance(RebalanceRequest.newBuilder()
                    .setDryRun(true).build()).getPlanJson());
            ExpertMemory memory = ExpertMemory.of(model);
            spare = spareSlots != null ? spareSlots : memory.layers() * Math.max(0, current.devices().size() - 1);
            PlacementPlan plan = Planner.plan(loads(measured, memory.layers(), memory.experts()), memory,
                    new Planner.Request(current.devices(), spare, 0));
            request.setPlanJson(plan.toJson());
        }
        RebalanceResponse r = admin().rebalance(request.build());
        return new Result(mode, r.getReplicasAdded(), r.getReplicasRemoved(), r.getImbalanceBefore(),
                r.getImbalanceAfter(), spare, (System.nanoTime() - start) / 1e9, r.getPlacement(),
                r.getPlanJson());
    }

    private AdminGrpc.AdminBlockingStub admin() {
        return AdminGrpc.newBlockingStub(channel).withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    /**
     * The measured tokens per expert as planner input; an expert the phase never chose counts one
     * token, so a layer without traffic is planned as uniform rather than refused.
     */
    static ExpertLoads loads(ExpertLoad measured, int layers, int experts) {
        double[][] counts = new double[layers][experts];
        for (int l = 0; l < layers; l++) {
            long[] t = measured.perLayer().get(l);
            for (int e = 0; e < experts; e++) {
                counts[l][e] = 1 + (t != null && e < t.length ? t[e] : 0);
            }
        }
        return ExpertLoads.ofCounts("the skewed phase", counts);
    }
}
