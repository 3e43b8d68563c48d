package dev.cmoe.deploy.cli;

import io.grpc.ManagedChannel;
import io.grpc.stub.AbstractStub;
import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * How a client command reaches a server: {@code --server}, the TLS flags and the bearer token,
 * declared once as a picocli mixin (client, health and rebalance had each their own copies).
 */
final class ServerAddress {
    @Option(names = "--server", defaultValue = "127.0.0.1:50051", description = "The server, HOST:PORT"
            + " (default: ${DEFAULT-VALUE}).")
    String server;

    @Mixin
    TlsOptions tls;

    @Mixin
    AuthTokenOption auth;

    /** A channel to the server with the TLS settings. */
    ManagedChannel open() throws IOException {
        return tls.open(server);
    }

    /** {@code stub} sending the bearer token, or unchanged without one. */
    <S extends AbstractStub<S>> S withBearer(S stub) throws IOException {
        return ClientChannels.withBearer(stub, auth.file);
    }

    Path tokenFile() {
        return auth.file;
    }
}
