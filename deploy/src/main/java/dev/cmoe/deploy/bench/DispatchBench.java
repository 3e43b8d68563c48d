package dev.cmoe.deploy.bench;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.cmoe.deploy.Cli;
import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.cluster.WireTensor;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.moe.LayerReplicas;
import dev.cmoe.server.moe.Replica;
import dev.cmoe.server.moe.RouterActor;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.pattern.Patterns;
import org.apache.pekko.serialization.Serialization;
import org.apache.pekko.serialization.SerializationExtension;
import org.apache.pekko.serialization.Serializer;
import org.apache.pekko.serialization.SerializerWithStringManifest;

/**
 * {@code cmoe bench-dispatch}: the cost of sending a MoE layer's routed rows to expert workers
 * and back, at batch 1 on loopback, with no-op experts so that nothing but dispatch is timed.
 * This JVM is the head: a carved model's layer-0 router, shared expert and combine in a real
 * {@link RouterActor}; the workers are separate JVMs ({@link DispatchWorker}) with a
 * {@link DeviceCompute} each. Every iteration takes each measurement once, in turn, so that the
 * machine's load falls on all of them alike; derived rows are per-iteration differences.
 */
public final class DispatchBench {
    private static final Duration ASK = Duration.ofSeconds(20);
    private static final int FRAME_BYTES = 1 << 20;

    /**
     * What to measure.
     *
     * @param model a carved checkpoint (its layer 0 routes; its routed experts are not loaded)
     * @param workers worker JVMs; experts of layer 0 are dealt round-robin over them
     */
    public record Options(Path model, String dtype, int workers, int iterations, int warmup) {
    }

    private DispatchBench() {
    }

    /** The actor-system settings of both ends: Artery over loopback, no cluster. */
    static Config config() {
        return ConfigFactory.parseString("""
                pekko.actor.provider = remote
                pekko.remote.artery.canonical.hostname = "127.0.0.1"
                pekko.remote.artery.canonical.port = 0
                pekko.remote.artery.advanced.maximum-frame-size = %d b
                pekko.loglevel = WARNING
                pekko.remote.warn-about-direct-use = off
                pekko.remote.use-unsafe-remote-features-outside-cluster = off
                pekko.remote.warn-unsafe-watch-outside-cluster = off
                """.formatted(FRAME_BYTES)).withFallback(ConfigFactory.load());
    }

    /** One worker JVM as this side sees it. */
    private record Worker(Process process, ActorRef<DeviceCompute.Command> compute,
                          Map<Integer, ActorRef<ExpertActor.Command>> experts, org.apache.pekko.actor.ActorRef echo) {
    }

    /** Starts the workers, measures, prints the table to {@code out} and stops the workers. */
    public static void run(Options o, PrintStream out) throws Exception {
        double loadStart = ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage();
        try (ModelDir dir = ModelDir.open(o.model(), LoadSpec.withoutRoutedExperts().withDtype(o.dtype()))) {
            MoeConfig moe = dir.moe().orElseThrow(() -> new IllegalArgumentException("model " + o.model()
                    + " is dense (no cmoe block in config.json): bench-dispatch needs a carved model"));
            if (o.workers() < 1 || o.workers() > moe.routed()) {
                throw new IllegalArgumentException("--workers must be 1.." + moe.routed() + ", got " + o.workers());
            }
            int hidden = dir.config().hiddenSize();
            DType dtype = dir.model().kernels().dtype();
            MoeFeedForward ffn = (MoeFeedForward) dir.model().feedForward(0);
            ActorSystem<Void> head = ActorSystem.create(Behaviors.empty(), "cmoe", config());
            List<Worker> workers = new ArrayList<>();
            try {
                for (int w = 0; w < o.workers(); w++) {
                    List<Integer> experts = new ArrayList<>();
                    for (int j = w; j < moe.routed(); j += o.workers()) {
                        experts.add(j);
                    }
                    workers.add(startWorker(head, "bench-" + (w + 1) + "/cpu", hidden, dtype, experts));
                }
                out.printf(Locale.ROOT, "cmoe bench-dispatch: %s (hidden %d, %d routed experts, top-%d, %s on the "
                                + "wire), %d worker JVM(s) on loopback, batch 1, %d iterations after %d warm-up, "
                                + "measurements interleaved; %d cores, load average %.2f at start%n", o.model(), hidden,
                        moe.routed(), moe.active(0), dtype.shortName(), o.workers(), o.iterations(), o.warmup(),
                        Runtime.getRuntime().availableProcessors(), loadStart);
                measure(o, out, head, workers, ffn, moe, hidden, dtype);
            } finally {
                for (Worker w : workers) {
                    w.process().getOutputStream().close(); // the worker ends when its stdin does
                }
                for (Worker w : workers) {
                    if (!w.process().waitFor(20, TimeUnit.SECONDS)) {
                        w.process().destroyForcibly();
                    }
                }
                head.terminate();
                head.getWhenTerminated().toCompletableFuture().get(20, TimeUnit.SECONDS);
            }
        }
        out.printf(Locale.ROOT, "load average %.2f at end%n",
                ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage());
    }

    private static Worker startWorker(ActorSystem<Void> head, String name, int hidden, DType dtype,
                                      List<Integer> experts) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin",
                "java").toString()));
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        cmd.add("-Xmx768m");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(Cli.class.getName());
        cmd.addAll(List.of("bench-dispatch", "--serve-worker", name, "--wire-dtype", dtype.name(), "--hidden",
                Integer.toString(hidden), "--experts", String.join(",", experts.stream().map(String::valueOf)
                        .toList())));
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        ActorRefResolver refs = ActorRefResolver.get(head);
        ActorRef<DeviceCompute.Command> compute = null;
        org.apache.pekko.actor.ActorRef echo = null;
        Map<Integer, ActorRef<ExpertActor.Command>> hosted = new HashMap<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        for (String line = in.readLine(); line != null && !line.equals("READY"); line = in.readLine()) {
            String[] f = line.split(" ");
            switch (f[0]) {
                case "COMPUTE" -> compute = refs.resolveActorRef(f[1]);
                case "EXPERT" -> hosted.put(Integer.parseInt(f[1]), refs.resolveActorRef(f[2]));
                case "ECHO" -> echo = Adapter.toClassic(refs.<byte[]>resolveActorRef(f[1]));
                default -> {
                    // other output of the worker's JVM
                }
            }
        }
        if (compute == null || echo == null || hosted.size() != experts.size()) {
            p.destroyForcibly();
            throw new IOException("worker " + name + " did not start (exit " + (p.isAlive() ? "none yet"
                    : p.exitValue()) + "); see its output above");
        }
        return new Worker(p, compute, hosted, echo);
    }

    /** Waits (bounded) until {@code compute}, local to {@code head}, holds {@code experts} kernels. */
    static void awaitServed(ActorSystem<Void> head, ActorRef<DeviceCompute.Command> compute, int experts,
                            String name) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (System.nanoTime() < deadline) {
            DeviceCompute.Stats s = AskPattern.<DeviceCompute.Command, DeviceCompute.Stats>ask(compute,
                    DeviceCompute.GetStats::new, ASK, head.scheduler()).toCompletableFuture().get(30, TimeUnit.SECONDS);
            if (s.experts() == experts) {
                return;
            }
            Thread.sleep(50);
        }
        throw new IllegalStateException("worker " + name + " did not serve its " + experts + " experts within 60 s");
    }

    private static void measure(Options o, PrintStream out, ActorSystem<Void> head, List<Worker> workers,
                                MoeFeedForward ffn, MoeConfig moe, int hidden, DType dtype) throws Exception {
        // the same layer over no-op experts in this JVM, for the in-process baseline
        ActorRef<DeviceCompute.Command> localCompute = head.systemActorOf(DeviceCompute.create("local/cpu",
                Device.cpu(), hidden, dtype), "local-compute", DispatcherSelector.fromConfig(ExpertActor.DISPATCHER));
        List<List<Replica>> local = new ArrayList<>();
        List<List<Replica>> remote = new ArrayList<>();
        for (int j = 0; j < moe.routed(); j++) {
            ActorRef<ExpertActor.Command> e = head.systemActorOf(ExpertActor.create(new ExpertId(0, j),
                    NoOpExpert::new, localCompute), "local-expert-" + j,
                    DispatcherSelector.fromConfig(ExpertActor.DISPATCHER));
            local.add(List.of(new Replica("local/cpu", e, localCompute)));
            Worker w = workers.get(j % workers.size());
            remote.add(List.of(new Replica("bench-" + (j % workers.size() + 1) + "/cpu", w.experts().get(j),
                    w.compute())));
        }
        awaitServed(head, localCompute, moe.routed(), "local");
        RouterActor.Limits limits = new RouterActor.Limits(ASK, ASK, FRAME_BYTES);
        ActorRef<RouterActor.Command> localRouter = head.systemActorOf(RouterActor.create(0, hidden, dtype, ffn,
                new LayerReplicas(0, local), limits, ServerMetrics.discarding()), "router-local",
                DispatcherSelector.fromConfig(RouterActor.DISPATCHER));
        ActorRef<RouterActor.Command> remoteRouter = head.systemActorOf(RouterActor.create(0, hidden, dtype, ffn,
                new LayerReplicas(0, remote), limits, ServerMetrics.discarding()), "router-remote",
                DispatcherSelector.fromConfig(RouterActor.DISPATCHER));

        Random r = new Random(17);
        float[][] tokens = new float[64][hidden];
        for (float[] t : tokens) {
            for (int i = 0; i < hidden; i++) {
                t[i] = (float) r.nextGaussian();
            }
        }
        // the batch a device gets at batch 1 when both of the token's experts are there
        Worker first = workers.getFirst();
        int[] firstExperts = first.experts().keySet().stream().sorted().limit(moe.active(0)).mapToInt(i -> i)
                .toArray();
        int rows = firstExperts.length;
        int[] ones = new int[rows];
        Arrays.fill(ones, 1);
        int payload = rows * hidden * dtype.byteSize();
        Serialization serialization = SerializationExtension.get(Adapter.toClassic(head));
        ActorRef<DeviceCompute.BatchReply> sink = head.systemActorOf(Behaviors.<DeviceCompute.BatchReply>ignore(), "serialise-only",
                Props.empty());

        int n = o.iterations();
        long[] ping = new long[n];
        long[] batch = new long[n];
        long[] ser = new long[n];
        long[] compute = new long[n];
        long[] slowest = new long[n];
        long[] layerLocal = new long[n];
        long[] layerRemote = new long[n];
        long[] routeCombine = new long[n];
        long step = 0;
        for (int it = -o.warmup(); it < n; it++) {
            float[] x = tokens[Math.floorMod(it, tokens.length)];
            WireTensor.Writer rw = WireTensor.writer(dtype, rows, hidden);
            for (int k = 0; k < rows; k++) {
                rw.put(x, 0, hidden);
            }
            WireTensor t = rw.done();
            long[] sample = new long[8];
            // each measurement once, starting at a different one every iteration
            for (int m = 0; m < 6; m++) {
                switch ((m + Math.floorMod(it, 6)) % 6) {
                    case 0 -> {
                        long s0 = System.nanoTime();
                        Patterns.ask(first.echo(), new byte[payload], ASK).toCompletableFuture()
                                .get(30, TimeUnit.SECONDS);
                        sample[0] = System.nanoTime() - s0;
                    }
                    case 1 -> {
                        long id = ++step;
                        long s0 = System.nanoTime();
                        DeviceCompute.BatchComputed c = computed(batch(head, first.compute(), id, firstExperts, ones,
                                t));
                        sample[1] = System.nanoTime() - s0;
                        sample[3] = c.computeNanos();
                    }
                    case 2 -> sample[2] = serialise(serialization, sink, firstExperts, ones, t);
                    case 3 -> sample[4] = slowest(head, workers, x, hidden, dtype, ++step);
                    case 4 -> sample[5] = layer(head, localRouter, ++step, x);
                    case 5 -> {
                        sample[6] = layer(head, remoteRouter, ++step, x);
                        sample[7] = routeAndCombine(ffn, x, hidden);
                    }
                    default -> throw new IllegalStateException();
                }
            }
            if (it >= 0) {
                ping[it] = sample[0];
                batch[it] = sample[1];
                ser[it] = sample[2];
                compute[it] = sample[3];
                slowest[it] = sample[4];
                layerLocal[it] = sample[5];
                layerRemote[it] = sample[6];
                routeCombine[it] = sample[7];
            }
        }
        long[] hops = new long[n];
        long[] overhead = new long[n];
        for (int i = 0; i < n; i++) {
            hops[i] = batch[i] - ping[i] - ser[i] - compute[i];
            overhead[i] = layerRemote[i] - layerLocal[i];
        }
        out.println();
        out.println("| measurement | p50 µs | p90 µs |");
        out.println("| --- | ---: | ---: |");
        row(out, "raw Artery ping, " + payload + " B each way (head ↔ worker 1)", ping);
        row(out, "device batch round trip, " + rows + " experts × 1 row (head ↔ worker 1, no-op experts)", batch);
        row(out, "  serialise: batch and answer, written and read (in this JVM)", ser);
        row(out, "  compute on the worker (" + rows + " no-op experts)", compute);
        row(out, "  actor hops and the rest: batch − ping − serialise − compute", hops);
        if (workers.size() > 1) {
            row(out, "wait for the slowest: last − first answer, 1 row to each of " + workers.size() + " workers",
                    slowest);
        }
        row(out, "router's own compute: route + shared expert + combine, in this JVM", routeCombine);
        row(out, "MoE layer via its router, no-op experts in this JVM", layerLocal);
        row(out, "MoE layer via its router, no-op experts on " + workers.size() + " worker JVM(s)", layerRemote);
        row(out, "**per-layer dispatch overhead: workers − in this JVM**", overhead);
    }

    private static DeviceCompute.BatchReply batch(ActorSystem<Void> head, ActorRef<DeviceCompute.Command> compute,
                                                  long id, int[] experts, int[] counts, WireTensor rows)
            throws Exception {
        return AskPattern.<DeviceCompute.Command, DeviceCompute.BatchReply>ask(compute,
                        reply -> new DeviceCompute.ComputeBatch(id, 0, experts, counts, rows, reply), ASK,
                        head.scheduler())
                .toCompletableFuture().get(30, TimeUnit.SECONDS);
    }

    private static DeviceCompute.BatchComputed computed(DeviceCompute.BatchReply reply) {
        if (reply instanceof DeviceCompute.BatchComputed c) {
            return c;
        }
        throw new IllegalStateException("a worker failed the batch: " + reply);
    }

    /** Nanoseconds to write and read a batch and its answer with the cluster serializer. */
    private static long serialise(Serialization serialization, ActorRef<DeviceCompute.BatchReply> replyTo,
                                  int[] experts, int[] counts, WireTensor rows) throws Exception {
        long s0 = System.nanoTime();
        Object request = new DeviceCompute.ComputeBatch(1, 0, experts, counts, rows, replyTo);
        roundTrip(serialization, request);
        roundTrip(serialization, new DeviceCompute.BatchComputed(1, rows, 0));
        return System.nanoTime() - s0;
    }

    private static void roundTrip(Serialization serialization, Object message) throws Exception {
        Serializer s = serialization.findSerializerFor(message);
        SerializerWithStringManifest m = (SerializerWithStringManifest) s;
        byte[] bytes = m.toBinary(message);
        m.fromBinary(bytes, m.manifest(message));
    }

    /** Nanoseconds between the first and the last answer when every worker gets one row at once. */
    private static long slowest(ActorSystem<Void> head, List<Worker> workers, float[] x, int hidden, DType dtype,
                                long id) throws Exception {
        if (workers.size() < 2) {
            return 0;
        }
        WireTensor one = WireTensor.writer(dtype, 1, hidden).put(x, 0, hidden).done();
        List<CompletableFuture<Long>> done = new ArrayList<>();
        for (Worker w : workers) {
            int j = w.experts().keySet().iterator().next();
            done.add(AskPattern.<DeviceCompute.Command, DeviceCompute.BatchReply>ask(w.compute(),
                            reply -> new DeviceCompute.ComputeBatch(id, 0, new int[] {j}, new int[] {1}, one, reply),
                            ASK, head.scheduler())
                    .toCompletableFuture().thenApply(reply -> {
                        computed(reply);
                        return System.nanoTime();
                    }));
        }
        long firstAt = Long.MAX_VALUE;
        long lastAt = Long.MIN_VALUE;
        for (CompletableFuture<Long> f : done) {
            long at = f.get(30, TimeUnit.SECONDS);
            firstAt = Math.min(firstAt, at);
            lastAt = Math.max(lastAt, at);
        }
        return lastAt - firstAt;
    }

    private static long layer(ActorSystem<Void> head, ActorRef<RouterActor.Command> router, long id, float[] x)
            throws Exception {
        long s0 = System.nanoTime();
        RouterActor.Reply reply = AskPattern.<RouterActor.Command, RouterActor.Reply>ask(router,
                r -> new RouterActor.Route(id, x, 1, r), ASK, head.scheduler()).toCompletableFuture()
                .get(30, TimeUnit.SECONDS);
        long took = System.nanoTime() - s0;
        if (!(reply instanceof RouterActor.Routed)) {
            throw new IllegalStateException("the layer failed: " + reply);
        }
        return took;
    }

    /** What the router computes itself for one token, with no-op experts' outputs (its rows). */
    private static long routeAndCombine(MoeFeedForward ffn, float[] x, int hidden) {
        long s0 = System.nanoTime();
        try (NDManager m = NDManager.newBaseManager()) {
            var xs = m.create(x, new Shape(1, hidden));
            Routing routing = ffn.route(xs);
            var shared = ffn.shared(xs);
            var outputs = new ai.djl.ndarray.NDArray[routing.nRouted()];
            for (int j = 0; j < outputs.length; j++) {
                if (routing.rows(j).length > 0) {
                    outputs[j] = xs.duplicate();
                }
            }
            shared.add(ffn.combine(routing, outputs)).toFloatArray();
        }
        return System.nanoTime() - s0;
    }

    private static void row(PrintStream out, String label, long[] nanos) {
        long[] s = nanos.clone();
        Arrays.sort(s);
        out.printf(Locale.ROOT, "| %s | %,.0f | %,.0f |%n", label, s[(int) (0.5 * (s.length - 1))] / 1e3,
                s[(int) (0.9 * (s.length - 1))] / 1e3);
    }
}
