package dev.cmoe.server.http;

import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import dev.cmoe.server.InferenceServer;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.scheduler.LlamaRunner;
import dev.cmoe.server.scheduler.DelegatingRunner;
import dev.cmoe.server.scheduler.ModelRunner;
import dev.cmoe.server.scheduler.ScheduledBatch;
import dev.cmoe.server.scheduler.SchedulerActor;
import dev.cmoe.server.scheduler.SchedulerConfig;
import dev.cmoe.server.scheduler.StepOutput;
import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/**
 * A server over a dense {@link TinyCheckpoint} model with both front ends: gRPC in-process and
 * the HTTP API on 127.0.0.1 (a free port), and the official OpenAI client pointed at it. Steps
 * can be held ({@link #hold}) and let through one at a time, so tests see a request mid-flight
 * without timing guesses.
 */
final class HttpTestServer implements AutoCloseable {
    static final String MODEL = "tiny-llama";
    private static ModelDir model;

    final ServerMetrics metrics = new ServerMetrics(new SimpleMeterRegistry());
    final InferenceServer server;
    final HttpApiServer http;
    final ManagedChannel channel;
    private final Semaphore steps = new Semaphore(0);
    private volatile boolean held;

    HttpTestServer(SchedulerConfig config, String token) throws IOException {
        String name = InProcessServerBuilder.generateName();
        ModelDir m = model();
        ModelRunner runner = new HeldRunner(new LlamaRunner(m.model()));
        server = InferenceServer.start(runner, m.config(), InferenceServer.denseInfo(m.config()), m.tokenizer(),
                config, InProcessServerBuilder.forName(name), metrics, token);
        http = server.startHttp("127.0.0.1", 0, MODEL, ChatTemplate.load(m.dir()));
        channel = InProcessChannelBuilder.forName(name).build();
    }

    /** The shared fixture model, written once per test JVM (it is only read). */
    static synchronized ModelDir model() {
        if (model == null) {
            try {
                Path dir = Files.createTempDirectory("cmoe-tiny-http");
                dir.toFile().deleteOnExit();
                model = ModelDir.open(TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), dir, DType.F32));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return model;
    }

    static Set<Integer> eos() {
        Set<Integer> eos = new HashSet<>(model().config().eosTokenIds());
        eos.add(model().tokenizer().eosId());
        return eos;
    }

    OpenAIClient client() {
        return client("unused");
    }

    OpenAIClient client(String apiKey) {
        // no retries: a test that expects a 429 or 503 must see it, not the client's second try
        return OpenAIOkHttpClient.builder().baseUrl("http://127.0.0.1:" + http.port() + "/v1").apiKey(apiKey)
                .maxRetries(0).timeout(Duration.ofSeconds(60)).build();
    }

    /** From now on every step waits for {@link #release}. */
    void hold() {
        held = true;
    }

    /** Lets {@code n} held steps run. */
    void release(int n) {
        steps.release(n);
    }

    /** Steps run freely again. */
    void unhold() {
        held = false;
        steps.release(10_000);
    }

    SchedulerActor.Stats stats() throws Exception {
        return AskPattern.<SchedulerActor.Command, SchedulerActor.Stats>ask(server.scheduler(),
                SchedulerActor.GetStats::new, Duration.ofSeconds(10), server.system().scheduler())
                .toCompletableFuture().get(10, TimeUnit.SECONDS);
    }

    /** Requests counted under {@code status} in the server's metrics. */
    double requests(String status) {
        Counter c = metrics.registry().find("cmoe.requests").tag("status", status).counter();
        return c == null ? 0 : c.count();
    }

    @Override
    public void close() throws Exception {
        unhold();
        channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        server.close();
    }

    /** The real runner, behind a turnstile while the test holds steps. */
    private final class HeldRunner implements DelegatingRunner {
        private final ModelRunner inner;

        HeldRunner(ModelRunner inner) {
            this.inner = inner;
        }

        @Override
        public ModelRunner delegate() {
            return inner;
        }

        @Override
        public StepOutput run(ScheduledBatch batch) {
            if (held) {
                try {
                    // bounded: a test that forgets to release fails on its own timeout, the JVM does not hang
                    if (!steps.tryAcquire(60, TimeUnit.SECONDS)) {
                        throw new IllegalStateException("a held step was not released within 60 s");
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(e);
                }
            }
            return inner.run(batch);
        }
    }
}
