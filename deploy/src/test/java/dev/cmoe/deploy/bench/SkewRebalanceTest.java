package dev.cmoe.deploy.bench;

import java.time.Duration;
import org.awaitility.Awaitility;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.deploy.cli.ServeCommand;
import dev.cmoe.experts.cluster.DeviceSpec;
import dev.cmoe.experts.cluster.WorkerNode;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.proto.v1.GetModelInfoRequest;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * The skew scenario against a real cluster: a head and three expert workers (each its own actor
 * system on loopback in this JVM). After the skewed phase the bench asks the head to apply an
 * EPLB plan built from that phase's load; the same skewed requests must then all complete on the
 * new placement, with replicas added and the per-layer device imbalance lower than before.
 */
@Timeout(240)
class SkewRebalanceTest {
    private static final String TOKEN = "skew-test-token";

    @Test
    void anEplbPlanFromTheSkewedLoadAddsReplicasAndEvensTheDevices(@TempDir Path tmp) throws Exception {
        Path token = Files.writeString(tmp.resolve("token"), TOKEN);
        int clusterPort;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            clusterPort = s.getLocalPort();
        }
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--model", BenchFixture.carved().toString(), "--port", "0",
                "--metrics-port", "0", "--auth-token-file", token.toString(), "--role", "head",
                "--cluster-seed", "127.0.0.1:" + clusterPort, "--min-devices", "3", "--rebalance-threshold", "0");
        List<WorkerNode> workers = new ArrayList<>();
        try (ServeCommand.Running head = serve.start()) {
            for (int i = 1; i <= 3; i++) {
                workers.add(WorkerNode.start("127.0.0.1", 0, List.of("127.0.0.1:" + clusterPort), "worker-" + i,
                        DeviceSpec.parse("cpu"), BenchFixture.carved(), 0, 512));
            }
            awaitPlaced(head.port());
            Path out = tmp.resolve("out");
            BenchFixture.Run run = BenchFixture.bench(out, "--target", "127.0.0.1:" + head.port(),
                    "--metrics", "127.0.0.1:" + head.metrics().port(), "--auth-token-file", token.toString(),
                    "--model", BenchFixture.carved().toString(), "--scenario", "skew", "--rebalance", "plan",
                    "--concurrency", "4", "--requests", "12", "--input-len", "24-32", "--output-len", "4");
            Verdict v = run.report().verdict();
            assertTrue(v.pass(), v.line());
            assertTrue(v.line().contains("plan rebalance (4 spare replicas) applied"), v.line()); // 2 layers × (3 - 1)
            assertEquals(3, run.report().loads().size(), "uniform, skewed, skewed after the rebalance");
            LoadSummary after = run.report().loads().get(2);
            assertEquals(12, after.ok(), after.errors());
            assertTrue(((Number) v.figures().get("replicas_added")).intValue() > 0, v.line());
            @SuppressWarnings("unchecked")
            Map<String, Long> perDevice = (Map<String, Long>) v.figures().get("rebalanced_tokens_per_device");
            assertEquals(3, perDevice.size(), "three devices served: " + perDevice);
            @SuppressWarnings("unchecked")
            List<Double> before = (List<Double>) v.figures().get("skewed_layer_device_max_over_mean");
            @SuppressWarnings("unchecked")
            List<Double> now = (List<Double>) v.figures().get("rebalanced_layer_device_max_over_mean");
            assertEquals(2, before.size(), "two layers");
            assertTrue(now.stream().mapToDouble(Double::doubleValue).sum()
                    < before.stream().mapToDouble(Double::doubleValue).sum(), before + " -> " + now);
        } finally {
            workers.forEach(WorkerNode::close);
        }
    }

    @Test
    void rebalanceIsRefusedWithoutAClusterHeadToAsk(@TempDir Path tmp) {
        IllegalArgumentException noHead = assertThrows(IllegalArgumentException.class,
                () -> BenchFixture.bench(tmp, "--model", BenchFixture.carved().toString(), "--scenario", "skew",
                        "--rebalance", "plan"));
        assertTrue(noHead.getMessage().contains("--target HEAD:PORT and --auth-token-file"), noHead.getMessage());
        IllegalArgumentException unknown = assertThrows(IllegalArgumentException.class,
                () -> BenchFixture.bench(tmp, "--model", BenchFixture.carved().toString(), "--scenario", "skew",
                        "--rebalance", "moves"));
        assertTrue(unknown.getMessage().contains("not one of none, head, plan"), unknown.getMessage());
    }

    /** Waits (bounded) until the head answers GetModelInfo with its experts placed on the three workers. */
    private static void awaitPlaced(int port) throws Exception {
        Metadata auth = new Metadata();
        auth.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + TOKEN);
        ManagedChannel channel = Grpc.newChannelBuilder("127.0.0.1:" + port, InsecureChannelCredentials.create())
                .intercept(MetadataUtils.newAttachHeadersInterceptor(auth)).build();
        try {
            Awaitility.await("the head places experts on 3 workers").atMost(Duration.ofSeconds(120))
                    .pollInterval(Duration.ofMillis(200))
                    .until(() -> GenerationGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
                            .getModelInfo(GetModelInfoRequest.getDefaultInstance()).getPlacement(),
                            placement -> placement.contains("worker-1") && placement.contains("worker-2")
                                    && placement.contains("worker-3") && placement.contains("every expert has a live host"));
        } finally {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }
}
