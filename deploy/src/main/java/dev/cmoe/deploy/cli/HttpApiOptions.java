package dev.cmoe.deploy.cli;

import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The OpenAI-compatible HTTP API's flags, a picocli mixin of the commands that start a server. */
final class HttpApiOptions {
    @Option(names = "--http-port", description = "Also serve the OpenAI-compatible HTTP API (/v1/completions,"
            + " /v1/chat/completions, /v1/models, /health) on this port, on --host; 0 picks a free one;"
            + " off unless given.")
    Integer httpPort;

    @Option(names = "--served-model-name", description = "The model id HTTP clients send and /v1/models lists"
            + " (default: the model directory's name).")
    String servedModelName;

    /** The model id for {@code modelDir}. */
    String modelName(Path modelDir) {
        if (servedModelName != null) {
            return servedModelName;
        }
        Path name = modelDir.toAbsolutePath().normalize().getFileName();
        return name == null ? "model" : name.toString();
    }
}
