package dev.cmoe.deploy.cli;

import io.grpc.ManagedChannel;
import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The TLS flags every client command takes, declared once as a picocli mixin. */
final class TlsOptions {
    @Option(names = "--tls", description = "Connect with TLS (system trust store unless --tls-ca).")
    boolean tls;

    @Option(names = "--tls-ca", description = "PEM CA certificate to trust; implies --tls.")
    Path tlsCa;

    /** A channel to {@code target} with these TLS settings. */
    ManagedChannel open(String target) throws IOException {
        return ClientChannels.open(target, tls, tlsCa);
    }
}
