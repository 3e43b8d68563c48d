package dev.cmoe.server.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.experts.cluster.ClusterSecurity;
import dev.cmoe.experts.cluster.DeviceSpec;
import dev.cmoe.experts.cluster.WorkerNode;
import dev.cmoe.experts.testing.TestKeyStores;
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
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.StreamSupport;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A head on Artery over TLS with mutual authentication and a cluster secret, on loopback: a worker
 * with the cluster's certificate and secret is given every expert; one with the certificate but
 * another secret is refused and downed; one with an untrusted certificate, and one on plain TCP,
 * never become members. None of the three is ever given an expert.
 */
@Timeout(240)
class SecuredClusterTest {
    private static final int MAX_BATCH_TOKENS = 512;
    private static final Duration WAIT = Duration.ofSeconds(90);

    @Test
    void onlyAWorkerWithTheCertificateAndTheSecretIsGivenExperts(@TempDir Path dir) throws Exception {
        TestKeyStores stores = new TestKeyStores(dir);
        Path cluster = stores.identity("cluster");
        Path trust = stores.trusting("cluster-trust", cluster);
        Path rogue = stores.identity("rogue");
        Path rogueTrust = stores.trusting("rogue-trust", cluster, rogue); // it trusts the head; the head does not trust it
        ClusterSecret secret = ClusterSecret.of("the secret of this test's cluster", "test");
        ClusterSecurity secured = new ClusterSecurity(TestKeyStores.tls(cluster, trust), secret);
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        List<String> seeds = List.of("127.0.0.1:" + port);
        List<WorkerNode> nodes = new ArrayList<>();
        try (ModelDir served = ModelDir.open(CarvedFixture.dir(), LoadSpec.withoutRoutedExperts())) {
            InferenceServer head = InferenceServer.startHead(served,
                    SchedulerConfig.defaults().withMaxBatchTokens(MAX_BATCH_TOKENS),
                    InProcessServerBuilder.forName(InProcessServerBuilder.generateName()),
                    new ServerMetrics(new SimpleMeterRegistry()), null,
                    HeadOptions.seed("127.0.0.1", port).withSecurity(secured));
            try {
                WorkerNode worker = start(nodes, seeds, "worker-1", secured);
                await("the secured worker is given every expert", () -> HeadPlacement.of(head).serving());
                assertEquals(Set.of("worker-1/cpu"), HeadPlacement.of(head).hosted().keySet());

                WorkerNode wrongSecret = start(nodes, seeds, "rogue-secret", new ClusterSecurity(
                        TestKeyStores.tls(cluster, trust), ClusterSecret.of("a guess at the cluster's secret", "t")));
                wrongSecret.whenTerminated().toCompletableFuture().get(WAIT.toSeconds(), TimeUnit.SECONDS);
                assertTrue(wrongSecret.refusal().orElse("").contains("did not prove the cluster's secret"),
                        "told why, it stopped for good instead of rejoining: " + wrongSecret.refusal());
                assertEquals(Set.of("worker-1/cpu"), HeadPlacement.of(head).hosted().keySet(),
                        "the member without the secret was downed, given nothing");

                WorkerNode untrusted = start(nodes, seeds, "rogue-cert",
                        new ClusterSecurity(TestKeyStores.tls(rogue, rogueTrust), secret));
                WorkerNode plain = start(nodes, seeds, "rogue-plain", new ClusterSecurity(null, secret));
                Cluster headCluster = Cluster.get(head.system());
                Set<String> strangers = Set.of(untrusted.address(), plain.address());
                Awaitility.await("strangers stay outside").during(Duration.ofSeconds(8)).atMost(Duration.ofSeconds(12))
                        .pollInterval(Duration.ofMillis(200)).until(() -> members(headCluster).stream()
                                .noneMatch(strangers::contains));
                assertTrue(members(headCluster).contains(worker.address()));
                for (WorkerNode stranger : List.of(untrusted, plain)) {
                    assertNotEquals(MemberStatus.up(), Cluster.get(stranger.system()).selfMember().status(),
                            stranger.address() + " joined without the cluster's certificate");
                }
                PlacementCoordinator.PlacementView view = HeadPlacement.of(head);
                assertEquals(Set.of("worker-1/cpu"), view.hosted().keySet());
                assertTrue(view.serving(), view.summary());
            } finally {
                // All at once. A node that never got in may take minutes to stop (its coordinated
                // shutdown waits out cluster phases and TLS handshakes): it is asked to and not
                // waited for beyond a bound; the fork's exit ends it.
                try {
                    nodes.forEach(n -> n.system().terminate());
                    for (WorkerNode n : nodes) {
                        try {
                            n.whenTerminated().toCompletableFuture().get(20, TimeUnit.SECONDS);
                            n.close();
                        } catch (java.util.concurrent.TimeoutException e) {
                            System.err.println("SecuredClusterTest: " + n.address() + " is still stopping");
                        }
                    }
                } finally {
                    head.close();
                }
            }
        }
    }

    private static WorkerNode start(List<WorkerNode> nodes, List<String> seeds, String name,
                                    ClusterSecurity security) {
        WorkerNode n = WorkerNode.start("127.0.0.1", 0, seeds, name, DeviceSpec.parse("cpu"), CarvedFixture.dir(), 0,
                MAX_BATCH_TOKENS, "auto", security);
        nodes.add(n);
        return n;
    }

    private static Set<String> members(Cluster cluster) {
        return StreamSupport.stream(cluster.state().getMembers().spliterator(), false)
                .map(m -> m.address().toString()).collect(Collectors.toSet());
    }

    private static void await(String what, java.util.concurrent.Callable<Boolean> condition) {
        Awaitility.await(what).atMost(WAIT).pollInterval(Duration.ofMillis(100)).until(condition);
    }
}
