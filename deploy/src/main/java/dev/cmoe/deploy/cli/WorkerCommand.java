package dev.cmoe.deploy.cli;

import dev.cmoe.experts.cluster.ClusterSecurity;
import dev.cmoe.experts.cluster.DeviceSpec;
import dev.cmoe.experts.cluster.WorkerNode;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicBoolean;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code cmoe worker}: an expert-worker node of a cluster. It joins the head's cluster, offers
 * its devices, and loads the routed experts the head places on them from the shared checkpoint.
 */
@Command(name = "worker", mixinStandardHelpOptions = true,
        description = "Host routed experts for a cluster head (cmoe serve --role head) until Ctrl-C.")
public final class WorkerCommand implements Callable<Integer> {
    @Mixin
    ClusterNodeOptions cluster;

    @Option(names = "--model", required = true,
            description = "The carved model directory, the same as the head's (a shared path).")
    Path model;

    @Mixin
    DtypeOption dtype;

    @Option(names = "--max-batch-tokens", defaultValue = "512",
            description = "The head's --max-batch-tokens, to size message frames (default: ${DEFAULT-VALUE}).")
    int maxBatchTokens;

    @Override
    public Integer call() throws Exception {
        List<String> clusterSeeds = ClusterNodeOptions.required(cluster.seeds, "--cluster-seed",
                "HOST:PORT of the head (the seed node)");
        String name = ClusterNodeOptions.required(cluster.name, "--name", "the worker's name, unique in the cluster");
        String devices = ClusterNodeOptions.required(cluster.devices, "--devices", "cpu, or gpu:0,gpu:1,...");
        ClusterSecurity security = cluster.security();
        if (!security.weakness().isEmpty()) {
            System.err.println("cmoe worker: WARNING: " + security.weakness());
        }
        WorkerNode node = WorkerNode.start(cluster.host != null ? cluster.host : "127.0.0.1",
                cluster.port != null ? cluster.port : 0, clusterSeeds, name, DeviceSpec.parse(devices), model,
                cluster.memoryPerDevice, maxBatchTokens, dtype.dtype, security);
        AtomicBoolean stopping = new AtomicBoolean();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopping.set(true);
            node.close(); // leaves the cluster: the head re-places this worker's experts at once
        }, "cmoe-worker-shutdown"));
        System.err.printf("cmoe worker: %s (%s) at %s, joining %s; serving %s%n", name, devices, node.address(),
                String.join(",", clusterSeeds), node.shape());
        try {
            // the node rejoins by itself when downed or when the head leaves; this returns when it stops for good
            node.whenTerminated().toCompletableFuture().join();
        } catch (java.util.concurrent.CompletionException e) {
            System.err.println("cmoe worker: " + name + " could not rejoin the cluster: " + e.getCause());
            return 1;
        }
        if (node.refusal().isPresent()) {
            System.err.println("cmoe worker: the head refused " + name + ": " + node.refusal().get());
            return 1;
        }
        if (!stopping.get()) {
            System.err.println("cmoe worker: " + name + " stopped; exiting");
            return 1;
        }
        return 0;
    }
}
