package dev.cmoe.server.grpc;

import io.grpc.BindableService;
import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The gRPC server: the Generation service, the standard health service and server reflection
 * (so grpcurl works), optionally behind a bearer token. The transport comes in as a
 * {@link ServerBuilder} so tests use the in-process one and {@code serve} uses Netty with TLS.
 * Every service sits behind an {@link EdgeGuard}. Reflection is on without a token; with one it
 * is off unless {@value #REFLECTION_PROPERTY} is {@code true}, and then needs the token too.
 */
public final class GrpcServer {
    private final Server server;
    private final HealthStatusManager health = new HealthStatusManager();

    private final ServingGate gate;
    private final ClientErrorLog clientErrors = new ClientErrorLog();

    /** System property that turns reflection on ({@code true}) or off ({@code false}) explicitly. */
    public static final String REFLECTION_PROPERTY = "cmoe.grpc.reflection";

    /** @param authToken required on every call when non-null */
    public GrpcServer(ServerBuilder<?> builder, BindableService generation, String authToken) {
        this(builder, List.of(generation), authToken, ServingGate.opened());
    }

    /**
     * @param services the Generation service and any others (Admin)
     * @param gate the health service reports SERVING exactly while it is open
     */
    public GrpcServer(ServerBuilder<?> builder, List<BindableService> services, String authToken, ServingGate gate) {
        this.gate = gate;
        long promptBytes = services.stream().filter(GenerateService.class::isInstance)
                .mapToLong(s -> ((GenerateService) s).maxPromptBytes()).max().orElse(0);
        builder.maxInboundMessageSize(maxInboundBytes(promptBytes));
        EdgeGuard guard = new EdgeGuard(clientErrors);
        services.forEach(s -> builder.addService(guard.guard(s.bindService())));
        builder.addService(guard.guard(health.getHealthService().bindService()));
        if (reflection(authToken != null)) {
            builder.addService(guard.guard(ProtoReflectionServiceV1.newInstance().bindService()));
            builder.addService(guard.guard(legacyReflection()));
        }
        if (authToken != null) {
            builder.intercept(new BearerTokenInterceptor(authToken));
        }
        this.server = builder.build();
    }

    /** The least inbound message size: room for an Admin plan of some 15,000 expert assignments. */
    public static final int MIN_INBOUND_BYTES = 1 << 20;

    /**
     * The largest request message the transport takes: twice the longest text prompt (plus room for
     * the other fields), at least {@link #MIN_INBOUND_BYTES}. Larger messages are refused with
     * RESOURCE_EXHAUSTED as their length arrives, before they are buffered, so a burst of huge
     * requests never costs their size in memory.
     */
    static int maxInboundBytes(long maxPromptBytes) {
        return (int) Math.min(Integer.MAX_VALUE, Math.max(MIN_INBOUND_BYTES, 2 * maxPromptBytes + (64 << 10)));
    }

    /**
     * Whether to serve reflection: it describes every service (Admin included), which is nobody's
     * business on a server that requires a token, so there it is off unless asked for.
     */
    static boolean reflection(boolean authenticated) {
        String p = System.getProperty(REFLECTION_PROPERTY);
        return p == null || p.isBlank() ? !authenticated : Boolean.parseBoolean(p.strip());
    }

    /** grpcurl before 1.9 only speaks the v1alpha reflection protocol. */
    @SuppressWarnings("deprecation")
    private static io.grpc.ServerServiceDefinition legacyReflection() {
        return io.grpc.protobuf.services.ProtoReflectionService.newInstance().bindService();
    }

    /** The log of calls clients got wrong, one line per interval. */
    public ClientErrorLog clientErrors() {
        return clientErrors;
    }

    public GrpcServer start() throws IOException {
        server.start();
        gate.onChange(open -> {
            HealthCheckResponse.ServingStatus s = open ? HealthCheckResponse.ServingStatus.SERVING
                    : HealthCheckResponse.ServingStatus.NOT_SERVING;
            health.setStatus("", s);
            health.setStatus("cmoe.v1.Generation", s);
        });
        return this;
    }

    /** The bound port (-1 for the in-process transport). */
    public int port() {
        return server.getPort();
    }

    /** Stops taking calls, lets running ones finish for up to {@code seconds}, then cancels the rest. */
    public void stop(long seconds) throws InterruptedException {
        clientErrors.flush();
        health.enterTerminalState();
        server.shutdown();
        if (!server.awaitTermination(seconds, TimeUnit.SECONDS)) {
            server.shutdownNow().awaitTermination(seconds, TimeUnit.SECONDS);
        }
    }
}
