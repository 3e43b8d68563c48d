package dev.cmoe.server.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.experts.cluster.DeviceSpec;
import dev.cmoe.experts.cluster.WorkerNode;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.server.InferenceServer;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.CarvedFixture;
import dev.cmoe.server.scheduler.SchedulerConfig;
import io.grpc.inprocess.InProcessServerBuilder;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A worker outlives its head: when the head goes, the worker leaves the cluster and waits at the
 * seeds as a new incarnation of its actor system, and a head restarted at the same address
 * places every expert on it again, the worker's JVM object never restarted.
 */
@Timeout(240)
class WorkerRejoinTest {
    private static final int MAX_BATCH_TOKENS = 512;
    private static final Duration WAIT = Duration.ofSeconds(90);

    @Test
    void aRestartedHeadServesAgainOnTheSameWorker() throws Exception {
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        // each head opens the model itself: a head installs its routers into the model it serves
        try (ModelDir served = ModelDir.open(CarvedFixture.dir(), LoadSpec.withoutRoutedExperts());
             ModelDir again = ModelDir.open(CarvedFixture.dir(), LoadSpec.withoutRoutedExperts())) {
            InferenceServer first = head(served, port);
            WorkerNode worker;
            try {
                worker = WorkerNode.start("127.0.0.1", 0, List.of("127.0.0.1:" + port), "worker-1",
                        DeviceSpec.parse("cpu"), CarvedFixture.dir(), 0, MAX_BATCH_TOKENS);
            } catch (RuntimeException e) {
                first.close();
                throw e;
            }
            try {
                try {
                    await("the first head places every expert on the worker", () -> HeadPlacement.of(first).serving());
                    assertEquals(Set.of("worker-1/cpu"), HeadPlacement.of(first).hosted().keySet());
                    assertEquals(0, worker.rejoins());
                } finally {
                    first.close();
                }
                await("the worker rejoins the seeds as a new incarnation", () -> worker.rejoins() >= 1);
                assertFalse(worker.whenTerminated().toCompletableFuture().isDone(), "the worker did not stop");

                InferenceServer second = head(again, port);
                try {
                    await("the restarted head places every expert on the same worker",
                            () -> HeadPlacement.of(second).serving()
                                    && HeadPlacement.of(second).hosted().keySet().equals(Set.of("worker-1/cpu")));
                    assertTrue(HeadPlacement.of(second).hosted().get("worker-1/cpu") > 0);
                    assertEquals(1, worker.rejoins(), "one rejoin: it waited at the seeds for the new head");
                    assertTrue(worker.refusal().isEmpty());
                } finally {
                    second.close();
                }
            } finally {
                worker.close();
            }
            assertTrue(worker.whenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS) != null,
                    "closed, it stops for good");
        }
    }

    private static InferenceServer head(ModelDir served, int port) throws java.io.IOException {
        return InferenceServer.startHead(served, SchedulerConfig.defaults().withMaxBatchTokens(MAX_BATCH_TOKENS),
                InProcessServerBuilder.forName(InProcessServerBuilder.generateName()),
                new ServerMetrics(new SimpleMeterRegistry()), null, HeadOptions.seed("127.0.0.1", port));
    }

    private static void await(String what, java.util.concurrent.Callable<Boolean> condition) {
        Awaitility.await(what).atMost(WAIT).pollInterval(Duration.ofMillis(200)).until(condition);
    }
}
