package dev.cmoe.deploy.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.deploy.Cli;
import io.grpc.Server;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** `cmoe health` against a real grpc.health.v1 service on a loopback port, as scripts and probes use it. */
@Timeout(60)
class HealthCommandTest {

    private static String[] run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrintStream old = System.out;
        int exit;
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            exit = Cli.run(args);
        } finally {
            System.setOut(old);
        }
        return new String[] {String.valueOf(exit), out.toString(StandardCharsets.UTF_8).strip()};
    }

    @Test
    void waitsForServingAndFailsOtherwise() throws Exception {
        HealthStatusManager health = new HealthStatusManager();
        health.setStatus("", ServingStatus.NOT_SERVING);
        Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
                .addService(health.getHealthService()).build().start();
        ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
        String address = "127.0.0.1:" + server.getPort();
        try {
            String[] once = run("health", "--server", address);
            assertEquals("1", once[0]);
            assertEquals(address + " NOT_SERVING", once[1]);

            timer.schedule(() -> health.setStatus("", ServingStatus.SERVING), 400, TimeUnit.MILLISECONDS);
            String[] waited = run("health", "--server", address, "--wait", "20", "--interval", "0.1");
            assertEquals("0", waited[0], waited[1]);
            assertEquals(address + " SERVING", waited[1]);

            String[] unknown = run("health", "--server", address, "--service", "no.such.Service");
            assertEquals("1", unknown[0]);
            assertTrue(unknown[1].contains("NOT_FOUND"), unknown[1]);
        } finally {
            timer.shutdownNow();
            server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
        String[] closed = run("health", "--server", address, "--wait", "0.3",
                "--interval", "0.1");
        assertEquals("1", closed[0]);
        assertTrue(closed[1].contains("UNAVAILABLE") && closed[1].contains("after waiting 0.3 s"), closed[1]);
    }
}
