package dev.cmoe.server.moe;

import dev.cmoe.experts.ExpertActor;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * One serving copy of a routed expert: its actor and the device it lives on (the device names
 * it in metrics and tells the router which copies a lost device takes with it).
 *
 * @param device {@code WORKER/DEVICE}, e.g. {@code worker-1/cpu}
 */
public record Replica(String device, ActorRef<ExpertActor.Command> ref) {
}
