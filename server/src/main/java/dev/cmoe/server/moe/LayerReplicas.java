package dev.cmoe.server.moe;

import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * Where each routed expert of one layer can be computed, as its router sees it: index j → the
 * replicas of expert j. An expert may have none for a while (its device was lost and it is being
 * re-placed); a step that needs it then waits, within a bound.
 *
 * @param experts j -> replicas of routed expert j
 */
public record LayerReplicas(int layer, List<List<Replica>> experts) {
    public LayerReplicas {
        experts = experts.stream().map(List::copyOf).toList();
    }

    /** One replica per expert, all on {@code device} (single-node serving). */
    public static LayerReplicas single(int layer, String device, List<ActorRef<ExpertActor.Command>> refs,
                                       ActorRef<DeviceCompute.Command> compute) {
        List<List<Replica>> out = new ArrayList<>();
        for (ActorRef<ExpertActor.Command> r : refs) {
            out.add(List.of(new Replica(device, r, compute)));
        }
        return new LayerReplicas(layer, out);
    }

    /** A layer of {@code routed} experts none of which is placed yet. */
    public static LayerReplicas empty(int layer, int routed) {
        List<List<Replica>> out = new ArrayList<>();
        for (int j = 0; j < routed; j++) {
            out.add(List.of());
        }
        return new LayerReplicas(layer, out);
    }

    /** The replicas of routed expert {@code j}. */
    public List<Replica> of(int j) {
        return experts.get(j);
    }

    public int routed() {
        return experts.size();
    }
}
