package dev.cmoe.server.grpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.testing.TinyCheckpoint;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.proto.v1.GetModelInfoRequest;
import dev.cmoe.proto.v1.ModelInfo;
import dev.cmoe.server.InferenceServer;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.ActorMoeFeedForward;
import dev.cmoe.server.moe.CarvedFixture;
import dev.cmoe.server.scheduler.SchedulerConfig;
import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** A carved checkpoint served through expert and router actors, over in-process gRPC, equals the in-process model. */
@Timeout(180)
class CarvedGenerateServiceTest {
    private static final Duration WAIT = Duration.ofSeconds(90);
    private static final ServerMetrics METRICS = new ServerMetrics(new SimpleMeterRegistry());
    private static ModelDir served;
    private static ModelDir reference;
    private static InferenceServer server;
    private static ManagedChannel channel;

    @BeforeAll
    static void start() throws Exception {
        served = ModelDir.open(CarvedFixture.dir(), LoadSpec.withoutRoutedExperts());
        reference = ModelDir.open(CarvedFixture.dir()); // the in-process carved model, untouched
        String name = InProcessServerBuilder.generateName();
        // A small budget and window so that prefill is chunked and steps mix prefill and decode.
        server = InferenceServer.start(served, SchedulerConfig.defaults().withMaxBatchTokens(24).withStreamWindow(4),
                InProcessServerBuilder.forName(name), METRICS, null);
        channel = InProcessChannelBuilder.forName(name).build();
    }

    @AfterAll
    static void stop() throws Exception {
        channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        server.close();
        served.close();
        reference.close();
    }

    @Test
    void everyLayerIsServedThroughActorsAndModelInfoSaysSo() {
        for (int l = 0; l < served.config().numLayers(); l++) {
            assertInstanceOf(ActorMoeFeedForward.class, served.model().feedForward(l));
        }
        ModelInfo info = GenerationGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
                .getModelInfo(GetModelInfoRequest.getDefaultInstance());
        assertEquals(CarvedFixture.EXPERTS - CarvedFixture.SHARED, info.getRoutedExperts());
        assertEquals(CarvedFixture.ACTIVE, info.getActiveExperts());
        assertTrue(reference.moe().orElseThrow().hasLayerBudgets(), "the fixture's layers select different N_k");
        assertEquals(CarvedFixture.SHARED, info.getSharedExperts());
        assertEquals(2, info.getLayers());
        assertTrue(info.getPlacement().contains("hosts 14 routed experts"), info.getPlacement());
    }

    @Test
    void eightConcurrentGreedyRequestsEqualGeneratorAloneOnTheInProcessCarvedModel() throws Exception {
        TextTokenizer tok = reference.tokenizer();
        Set<Integer> eos = new HashSet<>(reference.config().eosTokenIds());
        eos.add(tok.eosId());
        String[] words = TinyCheckpoint.TEXT.strip().split("\\s+");
        int n = 8;
        List<String> prompts = new ArrayList<>();
        int[] maxNew = new int[n];
        int[][] expected = new int[n][];
        for (int i = 0; i < n; i++) {
            prompts.add(String.join(" ", List.of(words).subList(i, i + 1 + 3 * i)));
            maxNew[i] = 6 + 5 * i;
            expected[i] = Generator.generate(reference.model(), tok.encodeIds(prompts.get(i), true), maxNew[i],
                    SamplingParams.greedy(), eos, t -> {
                    }).tokens();
        }
        assertTrue(java.util.Arrays.stream(expected).filter(t -> t.length > 5).count() >= n / 2,
                "the fixture generates long enough sequences to interleave");
        List<Responses> streams = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (i > 0) {
                streams.get(i - 1).awaitFirst(); // staggered starts: each request joins a batch already running
            }
            Responses s = Responses.eager();
            streams.add(s);
            GenerationGrpc.newStub(channel).generate(GenerateRequest.newBuilder().setText(prompts.get(i))
                    .setMaxNewTokens(maxNew[i]).setRequestId("carved-" + i).build(), s);
        }
        for (int i = 0; i < n; i++) {
            List<GenerateResponse> messages = streams.get(i).await(WAIT);
            assertTrue(messages.getLast().hasFinal(), "request " + i + " ends with a Final: " + messages.getLast());
            assertArrayEquals(expected[i], streams.get(i).tokens(), "request " + i + ": " + prompts.get(i));
        }
        assertTrue(METRICS.registry().get("cmoe.batch.sequences").summary().max() > 1, "requests shared steps");
        double routed = METRICS.registry().find("cmoe.expert.tokens").counters().stream()
                .mapToDouble(Counter::count).sum();
        assertTrue(routed > 0, "the routers counted their tokens");
    }

    @Test
    void anExpertFaultRestartsItAndLaterRequestsStillEqualGenerator() throws Exception {
        // the expert actors live under the system guardian: /system/experts-cpu-0/layer-L-expert-j
        org.apache.pekko.actor.ActorRef classic = server.system().classicSystem()
                .actorSelection("/system/experts-cpu-0/layer-1-expert-3")
                .resolveOne(Duration.ofSeconds(5)).toCompletableFuture().get(10, TimeUnit.SECONDS);
        org.apache.pekko.actor.typed.ActorRef<dev.cmoe.experts.ExpertActor.Command> expert =
                org.apache.pekko.actor.typed.javadsl.Adapter.toTyped(classic);
        TextTokenizer tok = reference.tokenizer();
        int[] prompt = tok.encodeIds("The jury said the city", true);
        int[] want = Generator.generate(reference.model(), prompt, 12, SamplingParams.greedy(), Set.of(),
                t -> {
                }).tokens();
        for (int round = 0; round < 2; round++) {
            expert.tell(new dev.cmoe.experts.ExpertActor.InjectFault("test round " + round));
            Responses s = Responses.eager();
            GenerationGrpc.newStub(channel).generate(GenerateRequest.newBuilder().setText("The jury said the city")
                    .setMaxNewTokens(12).setIgnoreEos(true).build(), s);
            List<GenerateResponse> messages = s.await(WAIT);
            assertTrue(messages.getLast().hasFinal(), "round " + round + " ends with a Final: " + messages.getLast());
            assertArrayEquals(want, s.tokens(), "round " + round);
        }
    }

    @Test
    void theHttpApiListsTheCarvedModelWithItsExpertsAndServesItThroughTheSameActors() throws Exception {
        var http = server.startHttp("127.0.0.1", 0, "carved-tiny", dev.cmoe.server.http.ChatTemplate.plain());
        com.openai.client.OpenAIClient client = com.openai.client.okhttp.OpenAIOkHttpClient.builder()
                .baseUrl("http://127.0.0.1:" + http.port() + "/v1").apiKey("unused").maxRetries(0)
                .timeout(WAIT).build();
        var model = client.models().list().data().getFirst();
        assertEquals("carved-tiny", model.id());
        String body = java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
                java.net.URI.create("http://127.0.0.1:" + http.port() + "/v1/models")).build(),
                java.net.http.HttpResponse.BodyHandlers.ofString()).body();
        var meta = com.google.gson.JsonParser.parseString(body).getAsJsonObject().getAsJsonArray("data").get(0)
                .getAsJsonObject().getAsJsonObject("metadata");
        assertTrue(meta.get("carved").getAsBoolean(), body);
        assertEquals(CarvedFixture.EXPERTS - CarvedFixture.SHARED, meta.get("routed_experts").getAsInt());
        assertEquals(CarvedFixture.ACTIVE, meta.get("active_experts").getAsInt());
        var c = client.completions().create(com.openai.models.completions.CompletionCreateParams.builder()
                .model("carved-tiny").prompt("The jury said").maxTokens(8).temperature(0.0).build());
        java.util.Iterator<dev.cmoe.proto.v1.GenerateResponse> it = GenerationGrpc.newBlockingStub(channel)
                .withDeadlineAfter(60, TimeUnit.SECONDS).generate(dev.cmoe.proto.v1.GenerateRequest.newBuilder()
                        .setText("The jury said").setMaxNewTokens(8).build());
        StringBuilder grpc = new StringBuilder();
        it.forEachRemaining(r -> grpc.append(r.hasChunk() ? r.getChunk().getText() : ""));
        assertEquals(grpc.toString(), c.choices().getFirst().text());
    }
}
