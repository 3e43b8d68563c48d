package dev.cmoe.server.moe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.moe.MoeFeedForward;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The carved FFN block adds its own shared expert to its router's routed answer, and turns a
 * failure or silence into an exception.
 */
@Timeout(30)
class ActorMoeFeedForwardTest {
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static ModelDir carved;
    private static int hidden;

    @BeforeAll
    static void open() {
        carved = ModelDir.open(CarvedFixture.dir());
        hidden = carved.config().hiddenSize();
    }

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
        carved.close();
    }

    private static MoeFeedForward local() {
        return (MoeFeedForward) carved.model().feedForward(1);
    }

    private static ActorMoeFeedForward block(ActorRef<RouterActor.Command> router, Duration timeout) {
        return new ActorMoeFeedForward(1, router, KIT.system().scheduler(), timeout, local());
    }

    private static NDArray input(NDManager m, int tokens) {
        float[] x = new float[tokens * hidden];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) Math.sin(0.37 * i);
        }
        return m.create(x, new Shape(tokens, hidden));
    }

    @Test
    void addsItsOwnSharedExpertToTheRoutersRoutedOutput() {
        assertTrue(local().config().shared() > 0, "the fixture has a shared expert");
        AtomicReference<RouterActor.Route> asked = new AtomicReference<>();
        ActorRef<RouterActor.Command> doubling = KIT.spawn(Behaviors.receiveMessage(m -> {
            RouterActor.Route r = (RouterActor.Route) m;
            asked.set(r);
            float[] out = r.x().clone();
            for (int i = 0; i < out.length; i++) {
                out[i] *= 2;
            }
            r.replyTo().tell(new RouterActor.Routed(r.stepId(), out));
            return Behaviors.same();
        }));
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray x = input(m, 2);
            NDArray y = block(doubling, Duration.ofSeconds(5)).forward(x);
            assertArrayEquals(new long[] {2, hidden}, y.getShape().getShape());
            assertArrayEquals(local().shared(x).add(x.mul(2)).toFloatArray(), y.toFloatArray());
            assertFalse(asked.get().withShared(), "the block computes the shared expert itself");
            assertArrayEquals(x.toFloatArray(), asked.get().x());
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
                    () -> block(failing, Duration.ofSeconds(5)).forward(input(m, 1)));
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
                    () -> block(failing, Duration.ofSeconds(5)).forward(input(m, 1)));
            assertTrue(e.getMessage().contains("expert (3, 1) did not answer"), e.getMessage());
        }
    }

    @Test
    void aSilentRouterBecomesAnExceptionAfterTheTimeout() {
        ActorRef<RouterActor.Command> silent = KIT.spawn(Behaviors.ignore());
        long start = System.nanoTime();
        try (NDManager m = NDManager.newBaseManager()) {
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> block(silent, Duration.ofMillis(300)).forward(input(m, 1)));
            assertTrue(e.getMessage().contains("did not answer"), e.getMessage());
        }
        assertTrue(System.nanoTime() - start < 5_000_000_000L, "it gave up in time");
    }
}
