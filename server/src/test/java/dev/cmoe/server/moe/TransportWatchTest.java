package dev.cmoe.server.moe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.net.ServerSocket;
import java.time.Duration;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

class TransportWatchTest {
    static final ActorTestKit kit = ActorTestKit.create();

    @AfterAll
    static void stop() {
        kit.shutdownTestKit();
    }

    /** A port that was just free: nothing listens on it. */
    private static int closedPort() throws Exception {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    @Test
    void aListeningPortIsNoRefusalAndAClosedOneIs() throws Exception {
        try (ServerSocket live = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            assertNull(TransportWatch.refusal("127.0.0.1", live.getLocalPort(), Duration.ofSeconds(2)));
        }
        assertNotNull(TransportWatch.refusal("127.0.0.1", closedPort(), Duration.ofSeconds(2)));
    }

    @Test
    void onlyANodeWhosePortRefusesIsReportedGone() throws Exception {
        ActorRef<TransportWatch.Command> watch = kit.spawn(TransportWatch.create());
        TestProbe<TransportWatch.Gone> gone = kit.createTestProbe();
        watch.tell(new TransportWatch.Attach(gone.getRef()));
        try (ServerSocket live = new ServerSocket(0, 8, InetAddress.getLoopbackAddress())) {
            watch.tell(new TransportWatch.Stalled(new Address("pekko", "cmoe", "127.0.0.1", live.getLocalPort())));
            gone.expectNoMessage(Duration.ofSeconds(1));
        }
        Address dead = new Address("pekko", "cmoe", "127.0.0.1", closedPort());
        watch.tell(new TransportWatch.Stalled(dead));
        TransportWatch.Gone g = gone.receiveMessage(Duration.ofSeconds(10));
        assertEquals(dead, g.node());
        assertTrue(g.reason().contains("refuses connections"), g.reason());
        // the same node again within the probe interval: not probed (and not reported) twice
        watch.tell(new TransportWatch.Stalled(dead));
        gone.expectNoMessage(Duration.ofMillis(300));
        // and again after it: probed again
        Thread.sleep(TransportWatch.PROBE_INTERVAL.toMillis());
        watch.tell(new TransportWatch.Stalled(dead));
        assertEquals(dead, gone.receiveMessage(Duration.ofSeconds(10)).node());
    }
}
