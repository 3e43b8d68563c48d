package dev.cmoe.server.grpc;

import org.awaitility.Awaitility;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.server.InferenceServer;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.scheduler.LlamaRunner;
import dev.cmoe.server.scheduler.ModelRunner;
import dev.cmoe.server.scheduler.SchedulerActor;
import dev.cmoe.server.scheduler.SchedulerConfig;
import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * A server on the in-process transport over a dense {@link TinyCheckpoint} model, with a channel
 * to it: the real gRPC stack, the real scheduler and the real model, nothing on the network.
 */
final class TinyServer implements AutoCloseable {
    private static ModelDir model;

    final InferenceServer server;
    final ManagedChannel channel;
    final ServerMetrics metrics = new ServerMetrics(new SimpleMeterRegistry());

    private TinyServer(SchedulerConfig config, Function<ModelRunner, ModelRunner> wrap, String token)
            throws IOException {
        this(config, wrap, token, false);
    }

    private TinyServer(SchedulerConfig config, Function<ModelRunner, ModelRunner> wrap, String token, boolean netty)
            throws IOException {
        String name = InProcessServerBuilder.generateName();
        ModelDir m = model();
        server = InferenceServer.start(wrap.apply(new LlamaRunner(m.model())), m.config(),
                InferenceServer.denseInfo(m.config()), m.tokenizer(), config,
                netty ? io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder.forAddress(
                        new java.net.InetSocketAddress("127.0.0.1", 0)) : InProcessServerBuilder.forName(name),
                metrics, token);
        channel = netty ? io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder.forAddress("127.0.0.1", server.port())
                .usePlaintext().maxInboundMessageSize(16 << 20).build() : InProcessChannelBuilder.forName(name).build();
    }

    /** The same server on Netty over 127.0.0.1 and a free port: what the transport enforces, the real way. */
    static TinyServer startNetty(SchedulerConfig config) throws IOException {
        return new TinyServer(config, r -> r, null, true);
    }

    static TinyServer start(SchedulerConfig config) throws IOException {
        return new TinyServer(config, r -> r, null);
    }

    static TinyServer start(SchedulerConfig config, Function<ModelRunner, ModelRunner> wrap, String token)
            throws IOException {
        return new TinyServer(config, wrap, token);
    }

    /** The shared fixture model, written once per test JVM (it is only read). */
    static synchronized ModelDir model() {
        if (model == null) {
            try {
                Path dir = Files.createTempDirectory("cmoe-tiny-serve");
                dir.toFile().deleteOnExit();
                model = ModelDir.open(TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), dir, DType.F32));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return model;
    }

    /** The prompt byte limit the server's validator applies: its context × the tokenizer's longest token. */
    static long maxPromptBytes() {
        return (long) model().config().maxPositionEmbeddings() * model().tokenizer().maxTokenBytes();
    }

    /** The stop tokens the server uses: the config's EOS ids and the tokenizer's. */
    static Set<Integer> eos() {
        Set<Integer> eos = new HashSet<>(model().config().eosTokenIds());
        eos.add(model().tokenizer().eosId());
        return eos;
    }

    GenerationGrpc.GenerationStub async() {
        return GenerationGrpc.newStub(channel);
    }

    GenerationGrpc.GenerationBlockingStub blocking() {
        return GenerationGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
    }

    SchedulerActor.Stats stats() throws Exception {
        return AskPattern.<SchedulerActor.Command, SchedulerActor.Stats>ask(server.scheduler(),
                SchedulerActor.GetStats::new, Duration.ofSeconds(10), server.system().scheduler())
                .toCompletableFuture().get(10, TimeUnit.SECONDS);
    }

    /** Polls (bounded) until the scheduler holds no sequence and no KV cache bytes. */
    void awaitIdle() {
        Awaitility.await("the scheduler holds no sequence and no KV cache bytes").atMost(Duration.ofSeconds(20))
                .pollInterval(Duration.ofMillis(20))
                .until(() -> {
                    SchedulerActor.Stats s = stats();
                    return s.running() + s.queued() == 0 && s.kvBytes() == 0 && metrics.kvBytesInUse() == 0;
                });
    }

    @Override
    public void close() throws Exception {
        channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        server.close();
    }
}
