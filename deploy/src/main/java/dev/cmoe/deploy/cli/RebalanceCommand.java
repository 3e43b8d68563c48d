package dev.cmoe.deploy.cli;

import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.proto.v1.AdminGrpc;
import dev.cmoe.proto.v1.RebalanceRequest;
import dev.cmoe.proto.v1.RebalanceResponse;
import io.grpc.ManagedChannel;
import io.grpc.stub.MetadataUtils;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code cmoe rebalance}: calls a cluster head's {@code Admin/Rebalance}, so an operator (or a
 * deployment script) need not hand-write the gRPC call; prints the plan now in force.
 */
@Command(name = "rebalance", mixinStandardHelpOptions = true,
        description = "Re-place a cluster head's routed experts (make-before-break) and print the plan in force.")
public final class RebalanceCommand implements Callable<Integer> {
    @Mixin
    ServerAddress address;

    @Option(names = "--plan", description = "Apply this plan (JSON, e.g. from cmoe plan) instead of the head's own.")
    Path plan;

    @Option(names = "--dry-run", description = "Report what would change; change nothing.")
    boolean dryRun;

    @Option(names = "--out", description = "Also write the plan in force to this file.")
    Path out;

    @Option(names = "--timeout", defaultValue = "180", description = "Deadline in seconds (default: ${DEFAULT-VALUE}).")
    long timeoutSeconds;

    @Override
    public Integer call() throws Exception {
        RebalanceRequest.Builder request = RebalanceRequest.newBuilder().setDryRun(dryRun);
        if (plan != null) {
            request.setPlanJson(PlacementPlan.read(plan).toJson()); // validated here, named errors before the call
        }
        if (address.tokenFile() == null) {
            throw new IllegalArgumentException("--auth-token-file is required: Admin/Rebalance only answers calls"
                    + " with the head's bearer token");
        }
        ManagedChannel channel = address.open();
        try {
            RebalanceResponse r = AdminGrpc.newBlockingStub(channel)
                    .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(ClientChannels.bearerHeaders(address.tokenFile())))
                    .withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS).rebalance(request.build());
            if (out != null) {
                PlacementPlan.fromJson(r.getPlanJson()).write(out);
            }
            System.out.println(r.getPlanJson());
            System.err.printf("%s%d replicas added, %d retired; device load max/mean %.3f -> %.3f%n%s%n",
                    dryRun ? "dry run: " : "", r.getReplicasAdded(), r.getReplicasRemoved(), r.getImbalanceBefore(),
                    r.getImbalanceAfter(), r.getPlacement());
            return 0;
        } finally {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }
}
