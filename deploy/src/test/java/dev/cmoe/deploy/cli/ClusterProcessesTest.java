package dev.cmoe.deploy.cli;

import org.awaitility.core.ConditionTimeoutException;
import org.awaitility.Awaitility;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.carve.CarveListener;
import dev.cmoe.carve.CarveOptions;
import dev.cmoe.carve.Carver;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.proto.v1.GetModelInfoRequest;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A head and expert workers as separate JVMs (the real command line) on loopback: requests
 * stream while one worker is killed with SIGKILL; every request still finishes with the tokens
 * of the in-process model; the worker is started again, rejoins, and receives experts at the
 * next rebalance. A head killed with SIGKILL and started again serves on the worker process
 * that stayed, and a worker paused until downed serves again once resumed, in the same process.
 */
@Timeout(420)
class ClusterProcessesTest {
    private static final Duration WAIT = Duration.ofSeconds(150);
    private static final String TOKEN = "processes-test-token";

    /** One Generate stream read slowly (one message per tick), so it is in flight when the worker dies. */
    private static final class SlowStream implements ClientResponseObserver<GenerateRequest, GenerateResponse> {
        final List<GenerateResponse> messages = new CopyOnWriteArrayList<>();
        final CompletableFuture<List<GenerateResponse>> done = new CompletableFuture<>();
        final CountDownLatch first = new CountDownLatch(1);
        volatile ClientCallStreamObserver<GenerateRequest> call;

        @Override
        public void beforeStart(ClientCallStreamObserver<GenerateRequest> requestStream) {
            call = requestStream;
            requestStream.disableAutoRequestWithInitial(1);
        }

        @Override
        public void onNext(GenerateResponse value) {
            messages.add(value);
            first.countDown();
        }

        @Override
        public void onError(Throwable t) {
            first.countDown();
            done.completeExceptionally(t);
        }

        @Override
        public void onCompleted() {
            done.complete(List.copyOf(messages));
        }

        int[] tokens() {
            return messages.stream().filter(GenerateResponse::hasChunk)
                    .flatMapToInt(r -> r.getChunk().getTokenIdsList().stream().mapToInt(Integer::intValue)).toArray();
        }
    }

    private static final long T0 = System.nanoTime();

    /** Phase timings in the test's output, to see where the time goes on a loaded machine. */
    private static void phase(String what) {
        System.err.printf("[cluster-processes %6.1f s] %s%n", (System.nanoTime() - T0) / 1e9, what);
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    /** Starts {@code cmoe ARGS} in a fresh JVM on this test's class path, its output in {@code log}. */
    private static Process cmoe(Path log, String... args) throws IOException {
        String java = ProcessHandle.current().info().command().orElse("java");
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        Path logback = log.resolveSibling("logback.xml");
        if (!Files.exists(logback)) {
            // the project's own INFO lines (joins, placements, failover), which the tails show on a failure
            Files.writeString(logback, """
                    <configuration>
                      <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
                        <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{20} - %msg%n</pattern></encoder>
                      </appender>
                      <logger name="dev.cmoe" level="INFO"/>
                      <logger name="org.apache.pekko.cluster" level="INFO"/>
                      <root level="WARN"><appender-ref ref="OUT"/></root>
                    </configuration>
                    """);
        }
        List<String> cmd = new ArrayList<>(List.of(java, "-Xmx768m", "--enable-native-access=ALL-UNNAMED",
                "-Dlogback.configurationFile=" + logback,
                "-Dai.djl.offline=true", "-Doffline=true", "-Dai.djl.pytorch.num_threads=1",
                // down the killed worker's old incarnation soon, so its replacement becomes a full member
                "-Dpekko.cluster.split-brain-resolver.stable-after=3s",
                "-cp", cp, "dev.cmoe.deploy.Cli"));
        cmd.addAll(List.of(args));
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    /** One test's cluster: the carved fixture, the bearer token file, the head's gRPC and cluster ports, the logs' folder. */
    private record Fixture(Path tmp, Path model, Path token, int grpcPort, int clusterPort) {
        /** The head's command line, waiting for {@code minDevices} devices before its first placement. */
        String[] head(int minDevices) {
            return new String[] {"serve", "--model", model.toString(), "--port", String.valueOf(grpcPort), "--role",
                "head", "--cluster-seed", "127.0.0.1:" + clusterPort, "--auth-token-file", token.toString(),
                "--max-batch-tokens", "64", "--min-devices", String.valueOf(minDevices)};
        }

        /** Starts worker {@code name} (its {@code round}-th start), logging to {@code NAME-ROUND.log}. */
        Process worker(String name, int round) throws IOException {
            return cmoe(tmp.resolve(name + "-" + round + ".log"), "worker", "--cluster-seed", "127.0.0.1:"
                    + clusterPort, "--name", name, "--devices", "cpu", "--model", model.toString(),
                    "--max-batch-tokens", "64");
        }
    }

    private static Fixture fixture(Path tmp) throws IOException {
        return new Fixture(tmp, carvedModel(tmp), Files.writeString(tmp.resolve("token"), TOKEN), freePort(),
                freePort());
    }

    /** The in-process model's greedy tokens for {@code text}: what every served generation must give. */
    private static int[] greedy(ModelDir reference, String text, int maxNew) {
        return Generator.generate(reference.model(), reference.tokenizer().encodeIds(text, true), maxNew,
                SamplingParams.greedy(), Set.of(), t -> {
                }).tokens();
    }


    private static void await(String what, BooleanSupplier condition, Path logs) throws Exception {
        try {
            Awaitility.await(what).atMost(WAIT).pollInterval(Duration.ofMillis(200)).until(condition::getAsBoolean);
        } catch (ConditionTimeoutException e) {
            throw new AssertionError(what + ": not within " + WAIT + "\n" + tails(logs), e);
        }
    }

    private static String tails(Path dir) throws IOException {
        StringBuilder b = new StringBuilder();
        try (var files = Files.list(dir)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".log")).sorted().toList()) {
                List<String> lines = Files.readAllLines(f, StandardCharsets.UTF_8);
                b.append("---- ").append(f.getFileName()).append('\n');
                lines.subList(Math.max(0, lines.size() - 25), lines.size()).forEach(l -> b.append(l).append('\n'));
            }
        }
        return b.toString();
    }

    private static Path carvedModel(Path tmp) throws IOException {
        Path dense = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 5), tmp.resolve("dense"), DType.F32);
        Path text = TinyCheckpoint.calibrationText(tmp.resolve("calib.txt"));
        Path out = tmp.resolve("carved");
        Carver.carve(dense, text, out, CarveOptions.of(1, 2, 8).withCalibration(4, 32, 7), CarveListener.NONE);
        return out;
    }

    private static String prompt(int i) {
        String[] words = TinyCheckpoint.TEXT.strip().split("\\s+");
        return String.join(" ", List.of(words).subList(i, i + 2 + i));
    }

    @Test
    void aWorkerKilledMidGenerationLosesNoRequestAndGetsExpertsAgainWhenItRejoins(@TempDir Path tmp)
            throws Exception {
        phase("carving the fixture");
        Fixture fx = fixture(tmp);
        List<Process> processes = new ArrayList<>();
        ManagedChannel channel = null;
        try (ModelDir reference = ModelDir.open(fx.model())) {
            processes.add(cmoe(tmp.resolve("head.log"), fx.head(2)));
            Process worker1 = fx.worker("worker-1", 1);
            Process worker2 = fx.worker("worker-2", 1);
            processes.add(worker1);
            processes.add(worker2);
            channel = channel(fx.grpcPort());
            ManagedChannel ch = channel;
            phase("started head and 2 workers");
            await("the head serves with both workers", () -> serving(ch), tmp);
            phase("serving");
            String before = info(ch);
            assertTrue(before.contains("worker-1/cpu") && before.contains("worker-2/cpu"), before);

            // stream requests, read slowly so that they are mid-generation when worker-2 dies
            int n = 6;
            int maxNew = 48;
            List<SlowStream> streams = new ArrayList<>();
            List<Thread> readers = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                SlowStream s = new SlowStream();
                streams.add(s);
                GenerationGrpc.newStub(channel).generate(GenerateRequest.newBuilder().setText(prompt(i))
                        .setMaxNewTokens(maxNew).setIgnoreEos(true).build(), s);
                readers.add(Thread.ofVirtual().start(() -> {
                    // Awaits the end of the stream, asking for one more message every 15 ms meanwhile.
                    long deadline = System.nanoTime() + WAIT.toNanos();
                    while (System.nanoTime() < deadline) {
                        try {
                            s.done.get(15, TimeUnit.MILLISECONDS);
                            return;
                        } catch (java.util.concurrent.TimeoutException slow) {
                            s.call.request(1);
                        } catch (InterruptedException | java.util.concurrent.ExecutionException e) {
                            return;
                        }
                    }
                }));
            }
            for (SlowStream s : streams) {
                assertTrue(s.first.await(60, TimeUnit.SECONDS), "a first message\n" + tails(tmp));
            }
            phase("all streams under way; SIGKILL worker-2");
            worker2.destroyForcibly(); // SIGKILL
            assertTrue(worker2.waitFor(20, TimeUnit.SECONDS));
            assertFalse(streams.stream().allMatch(s -> s.done.isDone()), "killed mid-generation");
            for (int i = 0; i < n; i++) {
                List<GenerateResponse> messages = streams.get(i).done.get(WAIT.toSeconds(), TimeUnit.SECONDS);
                assertTrue(messages.getLast().hasFinal(), "request " + i + " ends with a Final: " + messages.getLast());
                assertTrue(messages.stream().noneMatch(GenerateResponse::hasError), "request " + i + ": " + messages);
                int[] want = greedy(reference, prompt(i), maxNew);
                assertArrayEquals(want, streams.get(i).tokens(), "request " + i);
            }
            readers.forEach(Thread::interrupt);
            phase("all requests finished with the in-process tokens");
            await("worker-2's experts were re-placed on worker-1",
                    () -> info(ch).contains("1 expert-worker device(s)") && info(ch).contains("every expert"), tmp);

            // worker-2 comes back: it joins empty and gets experts at the next rebalance
            phase("re-placed; starting worker-2 again");
            Process again = fx.worker("worker-2", 2);
            processes.add(again);
            await("worker-2 rejoined", () -> info(ch).contains("worker-2/cpu=0"), tmp);
            phase("worker-2 rejoined; rebalancing");
            // the operator's command: cmoe rebalance (Admin/Rebalance with the bearer token)
            java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
            java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
            java.io.PrintStream oldOut = System.out;
            java.io.PrintStream oldErr = System.err;
            int exit;
            try {
                System.setOut(new java.io.PrintStream(out, true, StandardCharsets.UTF_8));
                System.setErr(new java.io.PrintStream(err, true, StandardCharsets.UTF_8));
                exit = dev.cmoe.deploy.Cli.run("rebalance", "--server", "127.0.0.1:" + fx.grpcPort(),
                        "--auth-token-file", fx.token().toString(), "--out", tmp.resolve("plan.json").toString());
            } finally {
                System.setOut(oldOut);
                System.setErr(oldErr);
            }
            String report = err.toString(StandardCharsets.UTF_8);
            assertTrue(exit == 0, report);
            PlacementPlan plan = PlacementPlan.fromJson(out.toString(StandardCharsets.UTF_8));
            assertFalse(plan.byDevice().get("worker-2/cpu").isEmpty(), plan.toJson());
            assertTrue(PlacementPlan.read(tmp.resolve("plan.json")).equals(plan), "--out wrote the plan in force");
            assertTrue(report.matches("(?s).*[1-9]\\d* replicas added.*"), report);
            await("worker-2 serves experts", () -> !info(ch).contains("worker-2/cpu=0"), tmp);
            // and a request now crosses both workers, with the same tokens as in-process
            SlowStream last = new SlowStream();
            GenerationGrpc.newStub(channel).generate(GenerateRequest.newBuilder().setText(prompt(2))
                    .setMaxNewTokens(20).setIgnoreEos(true).build(), last);
            last.call.request(1000);
            last.done.get(WAIT.toSeconds(), TimeUnit.SECONDS);
            phase("rebalanced; a request across both workers finished");
            assertArrayEquals(greedy(reference, prompt(2), 20), last.tokens());
        } finally {
            String keep = System.getenv("CMOE_TEST_KEEP_LOGS");
            if (keep != null) {
                try (var logs = Files.list(tmp)) {
                    for (Path f : logs.filter(p -> p.toString().endsWith(".log")).toList()) {
                        Files.copy(f, Path.of(keep).resolve(f.getFileName()),
                                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                    }
                }
            }
            stop(channel, processes);
        }
    }

    @Test
    void aHeadKilledWithSigkillAndStartedAgainServesOnTheWorkerThatStayed(@TempDir Path tmp) throws Exception {
        phase("carving the fixture (head restart)");
        Fixture fx = fixture(tmp);
        String[] head = fx.head(1);
        List<Process> processes = new ArrayList<>();
        ManagedChannel channel = null;
        try (ModelDir reference = ModelDir.open(fx.model())) {
            Process first = cmoe(tmp.resolve("head-1.log"), head);
            processes.add(first);
            Process worker = fx.worker("worker-1", 1);
            processes.add(worker);
            channel = channel(fx.grpcPort());
            ManagedChannel ch = channel;
            await("the head serves with the worker", () -> serving(ch) && info(ch).contains("worker-1/cpu"), tmp);
            int[] want = greedy(reference, prompt(1), 16);
            assertArrayEquals(want, generate(ch, prompt(1), 16), "through the first head");
            long workerPid = worker.pid();

            phase("SIGKILL the head");
            first.destroyForcibly();
            assertTrue(first.waitFor(20, TimeUnit.SECONDS));
            long restart = System.nanoTime();
            processes.add(cmoe(tmp.resolve("head-2.log"), head));
            await("the restarted head serves on the worker that stayed",
                    () -> serving(ch) && info(ch).contains("worker-1/cpu") && info(ch).contains("every expert"), tmp);
            phase(String.format(java.util.Locale.ROOT, "the restarted head serves %.1f s after it was started",
                    (System.nanoTime() - restart) / 1e9));
            assertTrue(worker.isAlive() && worker.pid() == workerPid, "the worker's process was never restarted\n"
                    + tails(tmp));
            assertTrue(rejoins(tmp.resolve("worker-1-1.log")) == 1, "the worker rejoined as a new incarnation\n"
                    + tails(tmp));
            assertArrayEquals(want, generate(ch, prompt(1), 16), "through the restarted head");

        } finally {
            stop(channel, processes);
        }
    }

    @Test
    void aWorkerPausedUntilDownedRejoinsWhenResumedAndServesAgain(@TempDir Path tmp) throws Exception {
        phase("carving the fixture (paused worker)");
        Fixture fx = fixture(tmp);
        List<Process> processes = new ArrayList<>();
        ManagedChannel channel = null;
        try (ModelDir reference = ModelDir.open(fx.model())) {
            processes.add(cmoe(tmp.resolve("head-1.log"), fx.head(1)));
            Process worker = fx.worker("worker-1", 1);
            processes.add(worker);
            channel = channel(fx.grpcPort());
            ManagedChannel ch = channel;
            await("the head serves with the worker", () -> serving(ch) && info(ch).contains("worker-1/cpu"), tmp);
            int[] want = greedy(reference, prompt(1), 16);
            assertArrayEquals(want, generate(ch, prompt(1), 16), "before the pause");

            // paused past failure detection, the worker is downed and removed; resumed, it rejoins
            phase("SIGSTOP the worker");
            signal(worker.pid(), "STOP");
            // until the head's split-brain resolver downs it, not only marks it unreachable
            await("the head downed the paused worker", () -> log(tmp.resolve("head-1.log")).contains("is downing"),
                    tmp);
            phase("SIGCONT the worker");
            signal(worker.pid(), "CONT");
            await("the resumed worker, downed, rejoined as a new incarnation",
                    () -> rejoins(tmp.resolve("worker-1-1.log")) >= 1, tmp);
            await("the rejoined worker serves again",
                    () -> serving(ch) && info(ch).contains("worker-1/cpu") && info(ch).contains("every expert"), tmp);
            phase("the resumed worker serves again");
            assertTrue(worker.isAlive(), "the paused worker's process stayed");
            int[] got;
            try {
                got = generate(ch, prompt(1), 16);
            } catch (Exception e) {
                throw new AssertionError("generation after the pause failed\n" + tails(tmp), e);
            }
            assertArrayEquals(want, got, "after the pause");
        } finally {
            stop(channel, processes);
        }
    }

    private static void signal(long pid, String signal) throws Exception {
        Process kill = new ProcessBuilder("kill", "-" + signal, Long.toString(pid)).inheritIO().start();
        assertTrue(kill.waitFor(10, TimeUnit.SECONDS) && kill.exitValue() == 0, "kill -" + signal + " " + pid);
    }

    private static String log(Path file) {
        try {
            return Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }

    /** How often the worker whose log is {@code file} has rejoined as a new incarnation. */
    private static long rejoins(Path file) {
        return log(file).lines().filter(l -> l.contains("rejoining the seeds")).count();
    }

    /** A plaintext channel to the head's gRPC port that sends the test's bearer token. */
    private static ManagedChannel channel(int grpcPort) {
        Metadata auth = new Metadata();
        auth.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + TOKEN);
        return NettyChannelBuilder.forAddress("127.0.0.1", grpcPort).usePlaintext()
                .intercept(MetadataUtils.newAttachHeadersInterceptor(auth)).build();
    }

    /** Closes the channel and stops every process, SIGTERM first, SIGKILL for any still running after 20 s. */
    private static void stop(ManagedChannel channel, List<Process> processes) throws InterruptedException {
        if (channel != null) {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
        for (Process p : processes) {
            p.destroy();
        }
        for (Process p : processes) {
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    /** The token ids of a greedy generation through {@code channel}. */
    private static int[] generate(ManagedChannel channel, String text, int maxNew) throws Exception {
        SlowStream s = new SlowStream();
        GenerationGrpc.newStub(channel).generate(GenerateRequest.newBuilder().setText(text).setMaxNewTokens(maxNew)
                .setIgnoreEos(true).build(), s);
        s.call.request(1000);
        List<GenerateResponse> messages = s.done.get(WAIT.toSeconds(), TimeUnit.SECONDS);
        assertTrue(messages.stream().noneMatch(GenerateResponse::hasError), messages.toString());
        return s.tokens();
    }

    private static boolean serving(ManagedChannel channel) {
        try {
            return HealthGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.newBuilder().setService("cmoe.v1.Generation").build())
                    .getStatus() == HealthCheckResponse.ServingStatus.SERVING;
        } catch (RuntimeException e) {
            return false; // not up yet
        }
    }

    private static String info(ManagedChannel channel) {
        try {
            return GenerationGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .getModelInfo(GetModelInfoRequest.getDefaultInstance()).getPlacement();
        } catch (RuntimeException e) {
            return "";
        }
    }
}
