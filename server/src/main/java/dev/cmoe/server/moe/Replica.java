package dev.cmoe.server.moe;

import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * One serving copy of a routed expert: its actor (which names the copy: work is counted and
 * drained by it), the device it lives on (in metrics, and which copies a lost device takes with
 * it) and that device's compute, to which a step sends the rows of all its experts there at once.
 *
 * @param device {@code WORKER/DEVICE}, e.g. {@code worker-1/cpu}
 */
public record Replica(String device, ActorRef<ExpertActor.Command> ref, ActorRef<DeviceCompute.Command> compute) {
}
