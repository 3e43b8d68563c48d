package dev.cmoe.server.moe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.time.Duration;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The carved FFN block returns its router's answer, and turns a failure or silence into an exception. */
@Timeout(30)
class ActorMoeFeedForwardTest {
    private static final ActorTestKit KIT = ActorTestKit.create();

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    private static ActorMoeFeedForward block(ActorRef<RouterActor.Command> router, Duration timeout) {
        return new ActorMoeFeedForward(3, router, KIT.system().scheduler(), timeout, null);
    }

    @Test
    void returnsTheRoutersOutputInTheCallersShape() {
        ActorRef<RouterActor.Command> doubling = KIT.spawn(Behaviors.receiveMessage(m -> {
            RouterActor.Route r = (RouterActor.Route) m;
            float[] out = r.x().clone();
            for (int i = 0; i < out.length; i++) {
                out[i] *= 2;
            }
            r.replyTo().tell(new RouterActor.Routed(r.stepId(), out));
            return Behaviors.same();
        }));
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray y = block(doubling, Duration.ofSeconds(5)).forward(m.create(new float[] {1, 2, 3, 4, 5, 6},
                    new Shape(2, 3)));
            assertArrayEquals(new long[] {2, 3}, y.getShape().getShape());
            assertArrayEquals(new float[] {2, 4, 6, 8, 10, 12}, y.toFloatArray());
        }
    }

    @Test
    void anUnavailableExpertBecomesAnUnavailableException() {
        ActorRef<RouterActor.Command> failing = KIT.spawn(Behaviors.receiveMessage(m -> {
            RouterActor.Route r = (RouterActor.Route) m;
            r.replyTo().tell(new RouterActor.Failed(r.stepId(), "experts [2] have no live replica", true));
            return Behaviors.same();
        }));
        try (NDManager m = NDManager.newBaseManager()) {
            dev.cmoe.server.scheduler.UnavailableException e = assertThrows(
                    dev.cmoe.server.scheduler.UnavailableException.class,
                    () -> block(failing, Duration.ofSeconds(5)).forward(m.create(new float[4], new Shape(1, 4))));
            assertTrue(e.getMessage().contains("no live replica"), e.getMessage());
        }
    }

    @Test
    void aFailedStepBecomesAnExceptionNamingTheReason() {
        ActorRef<RouterActor.Command> failing = KIT.spawn(Behaviors.receiveMessage(m -> {
            RouterActor.Route r = (RouterActor.Route) m;
            r.replyTo().tell(new RouterActor.Failed(r.stepId(), "layer 3: expert (3, 1) did not answer", false));
            return Behaviors.same();
        }));
        try (NDManager m = NDManager.newBaseManager()) {
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> block(failing, Duration.ofSeconds(5)).forward(m.create(new float[4], new Shape(1, 4))));
            assertTrue(e.getMessage().contains("expert (3, 1) did not answer"), e.getMessage());
        }
    }

    @Test
    void aSilentRouterBecomesAnExceptionAfterTheTimeout() {
        ActorRef<RouterActor.Command> silent = KIT.spawn(Behaviors.ignore());
        long start = System.nanoTime();
        try (NDManager m = NDManager.newBaseManager()) {
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> block(silent, Duration.ofMillis(300)).forward(m.create(new float[4], new Shape(1, 4))));
            assertTrue(e.getMessage().contains("did not answer"), e.getMessage());
        }
        assertTrue(System.nanoTime() - start < 5_000_000_000L, "it gave up in time");
    }
}
