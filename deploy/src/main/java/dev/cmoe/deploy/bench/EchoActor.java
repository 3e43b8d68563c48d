package dev.cmoe.deploy.bench;

import org.apache.pekko.actor.AbstractActor;
import org.apache.pekko.actor.Props;

/**
 * Answers every byte array with itself: the raw Artery round trip (Pekko's byte-array
 * serializer, no tensor format, no compute) that {@code cmoe bench-dispatch} compares a layer's
 * dispatch with. A classic actor, because the typed API has no sender to answer.
 */
final class EchoActor extends AbstractActor {
    static Props props() {
        return Props.create(EchoActor.class, EchoActor::new);
    }

    @Override
    public Receive createReceive() {
        return receiveBuilder().match(byte[].class, b -> getSender().tell(b, getSelf())).build();
    }
}
