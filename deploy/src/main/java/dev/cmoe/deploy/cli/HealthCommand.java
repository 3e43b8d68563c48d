package dev.cmoe.deploy.cli;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code cmoe health}: asks a server's standard gRPC health service whether it is SERVING, once
 * or until it is; scripts and container probes wait on it (a cluster head is NOT_SERVING until
 * every expert has a live host).
 */
@Command(name = "health", mixinStandardHelpOptions = true,
        description = "Check a server's grpc.health.v1 status: exit 0 when SERVING, 1 otherwise.")
public final class HealthCommand implements Callable<Integer> {
    @Mixin
    ServerAddress address;

    @Option(names = "--service", defaultValue = "", description = "Service to ask about; empty = the whole server (default).")
    String service;

    @Option(names = "--wait", defaultValue = "0",
            description = "Keep asking for up to this many seconds until SERVING; 0 = ask once (default).")
    double waitSeconds;

    @Option(names = "--interval", defaultValue = "0.5", description = "Seconds between checks while waiting (default: ${DEFAULT-VALUE}).")
    double intervalSeconds;

    @Option(names = "--timeout", defaultValue = "5", description = "Seconds one check may take (default: ${DEFAULT-VALUE}).")
    double timeoutSeconds;

    @Option(names = "--quiet", description = "Print nothing; the exit code tells.")
    boolean quiet;


    @Override
    public Integer call() throws Exception {
        if (waitSeconds < 0 || intervalSeconds <= 0 || timeoutSeconds <= 0) {
            throw new IllegalArgumentException("--wait must be ≥ 0, --interval and --timeout > 0; got " + waitSeconds
                    + ", " + intervalSeconds + " and " + timeoutSeconds);
        }
        ManagedChannel channel = address.open();
        try {
            HealthGrpc.HealthBlockingStub stub = address.withBearer(HealthGrpc.newBlockingStub(channel));
            long deadline = System.nanoTime() + (long) (waitSeconds * 1e9);
            String last;
            while (true) {
                last = check(stub);
                if (last.equals(HealthCheckResponse.ServingStatus.SERVING.name())) {
                    report(address.server + " SERVING");
                    return 0;
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                Thread.sleep(Math.min(TimeUnit.NANOSECONDS.toMillis(left) + 1, (long) (intervalSeconds * 1000)));
            }
            report(address.server + " " + last + (waitSeconds > 0 ? " after waiting " + waitSeconds + " s" : ""));
            return 1;
        } finally {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    /** The status name, or why there is none (UNAVAILABLE: connection refused, ...). */
    private String check(HealthGrpc.HealthBlockingStub stub) {
        try {
            return stub.withDeadlineAfter((long) (timeoutSeconds * 1000), TimeUnit.MILLISECONDS)
                    .check(HealthCheckRequest.newBuilder().setService(service).build()).getStatus().name();
        } catch (StatusRuntimeException e) {
            return e.getStatus().getCode() + (e.getStatus().getDescription() != null
                    ? " (" + e.getStatus().getDescription() + ")" : "");
        }
    }

    private void report(String line) {
        if (!quiet) {
            System.out.println(line);
        }
    }
}
