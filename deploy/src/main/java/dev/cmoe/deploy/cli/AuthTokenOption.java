package dev.cmoe.deploy.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/**
 * {@code --auth-token-file}, the one bearer-token flag of every command that starts a server
 * (the token it requires) or reaches one (the token it sends), declared once as a picocli mixin.
 */
final class AuthTokenOption {
    @Option(names = "--auth-token-file", description = "File holding the bearer token: a server requires it on every"
            + " call (gRPC and HTTP, and the Admin service of a cluster head); a client sends it.")
    Path file;

    /** The token, or null without the flag. */
    String read() throws IOException {
        if (file == null) {
            return null;
        }
        String token = Files.readString(file, StandardCharsets.UTF_8).strip();
        if (token.isEmpty()) {
            throw new IllegalArgumentException("--auth-token-file " + file + " is empty");
        }
        return token;
    }
}
