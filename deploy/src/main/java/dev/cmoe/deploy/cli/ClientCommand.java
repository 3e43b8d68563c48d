package dev.cmoe.deploy.cli;

import dev.cmoe.proto.v1.Final;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GenerationGrpc;
import io.grpc.ManagedChannel;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code cmoe client}: sends one prompt to a server and streams the text as it arrives. */
@Command(name = "client", mixinStandardHelpOptions = true,
        description = "Generate through a running `cmoe serve`, streaming text to stdout and usage to stderr.")
public final class ClientCommand implements Callable<Integer> {
    @Mixin
    ServerAddress address;

    @Option(names = "--max-new-tokens", description = "Most tokens to generate (default: up to the context).")
    Integer maxNewTokens;

    @Option(names = "--min-new-tokens", defaultValue = "0", description = "No stop token before this many.")
    int minNewTokens;

    @Option(names = "--temperature", defaultValue = "0", description = "0 = greedy (default: ${DEFAULT-VALUE}).")
    double temperature;

    @Option(names = "--top-k", defaultValue = "0", description = "Keep the k most likely tokens; 0 = off.")
    int topK;

    @Option(names = "--top-p", defaultValue = "1", description = "Nucleus mass; 1 = off.")
    double topP;

    @Option(names = "--min-p", defaultValue = "0", description = "Drop tokens below min-p × top probability.")
    double minP;

    @Option(names = "--repetition-penalty", defaultValue = "1", description = "1 = off.")
    double repetitionPenalty;

    @Option(names = "--seed", defaultValue = "0", description = "Random seed.")
    long seed;

    @Option(names = "--stop", description = "Stop before this text (repeatable).")
    List<String> stop = new ArrayList<>();

    @Option(names = "--ignore-eos", description = "Keep generating past the end-of-sequence token.")
    boolean ignoreEos;

    @Option(names = "--no-bos", description = "Do not prepend the BOS token to the prompt.")
    boolean noBos;

    @Option(names = "--request-id", description = "Id for Abort and logs (default: assigned by the server).")
    String requestId;

    @Option(names = "--timeout", defaultValue = "300", description = "Deadline in seconds (default: ${DEFAULT-VALUE}).")
    long timeoutSeconds;


    @Parameters(index = "0", description = "The prompt.")
    String prompt;

    @Override
    public Integer call() throws Exception {
        ManagedChannel channel = address.open();
        try {
            GenerationGrpc.GenerationBlockingStub stub = address.withBearer(GenerationGrpc.newBlockingStub(channel)
                    .withDeadlineAfter(timeoutSeconds, TimeUnit.SECONDS));
            return stream(stub.generate(request()));
        } finally {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    GenerateRequest request() {
        GenerateRequest.Builder r = GenerateRequest.newBuilder().setText(prompt).setSkipBos(noBos)
                .setMinNewTokens(minNewTokens).setTemperature(temperature).setTopK(topK).setTopP(topP).setMinP(minP)
                .setRepetitionPenalty(repetitionPenalty).setSeed(seed).addAllStop(stop).setIgnoreEos(ignoreEos);
        if (maxNewTokens != null) {
            r.setMaxNewTokens(maxNewTokens);
        }
        if (requestId != null) {
            r.setRequestId(requestId);
        }
        return r.build();
    }

    private static int stream(Iterator<GenerateResponse> responses) {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        long start = System.nanoTime();
        int exit = 0;
        while (responses.hasNext()) {
            GenerateResponse r = responses.next();
            switch (r.getKindCase()) {
                case CHUNK -> out.print(r.getChunk().getText());
                case ERROR -> {
                    System.err.println("cmoe client: error " + r.getError().getCode() + ": " + r.getError().getMessage());
                    exit = 2;
                }
                case FINAL -> {
                    out.println();
                    Final f = r.getFinal();
                    double secs = (System.nanoTime() - start) / 1e9;
                    System.err.printf(Locale.ROOT,
                            "[%s: %d prompt tokens, %d generated, finish %s, first token %.0f ms, queued %.0f ms, %.1f tokens/s]%n",
                            r.getRequestId(), f.getUsage().getPromptTokens(), f.getUsage().getCompletionTokens(),
                            f.getFinishReason(), f.getTimeToFirstTokenMs(), f.getQueueTimeMs(),
                            f.getUsage().getCompletionTokens() / secs);
                }
                default -> {
                }
            }
        }
        return exit;
    }
}
