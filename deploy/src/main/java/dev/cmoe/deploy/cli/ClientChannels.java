package dev.cmoe.deploy.cli;

import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.AbstractStub;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** How every client command reaches a server: one place for TLS choice and the bearer token. */
final class ClientChannels {
    private ClientChannels() {
    }

    /** A channel to {@code target}: TLS trusting {@code tlsCa} if given, else the system store if {@code tls}, else plaintext. */
    static ManagedChannel open(String target, boolean tls, Path tlsCa) throws IOException {
        ChannelCredentials credentials = tlsCa != null
                ? TlsChannelCredentials.newBuilder().trustManager(tlsCa.toFile()).build()
                : tls ? TlsChannelCredentials.create() : InsecureChannelCredentials.create();
        return Grpc.newChannelBuilder(target, credentials).build();
    }

    /** The {@code authorization: Bearer …} header read from a token file. */
    static Metadata bearerHeaders(Path tokenFile) throws IOException {
        Metadata headers = new Metadata();
        headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER),
                "Bearer " + Files.readString(tokenFile, StandardCharsets.UTF_8).strip());
        return headers;
    }

    /** {@code stub} sending the bearer token of {@code tokenFile}, or unchanged when there is none. */
    static <S extends AbstractStub<S>> S withBearer(S stub, Path tokenFile) throws IOException {
        return tokenFile == null ? stub : stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(bearerHeaders(tokenFile)));
    }
}
