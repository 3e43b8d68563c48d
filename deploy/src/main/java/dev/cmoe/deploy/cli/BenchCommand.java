package dev.cmoe.deploy.cli;

import dev.cmoe.deploy.bench.Arrivals;
import dev.cmoe.deploy.bench.BenchReport;
import dev.cmoe.deploy.bench.HeadRebalance;
import dev.cmoe.deploy.bench.LengthDistribution;
import dev.cmoe.deploy.bench.LoadRunner;
import dev.cmoe.deploy.bench.LoadSummary;
import dev.cmoe.deploy.bench.MetricsScraper;
import dev.cmoe.deploy.bench.PromptSource;
import dev.cmoe.deploy.bench.RequestResult;
import dev.cmoe.deploy.bench.Scenarios;
import dev.cmoe.deploy.bench.ServerView;
import dev.cmoe.deploy.bench.Workload;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.proto.v1.GenerationGrpc;
import dev.cmoe.proto.v1.GetModelInfoRequest;
import dev.cmoe.proto.v1.ModelInfo;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import me.tongfei.progressbar.ProgressBar;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code cmoe bench}: a gRPC load generator and the stress scenarios. It targets a running
 * server ({@code --target}) or starts one itself on 127.0.0.1 for {@code --model}, drives a closed
 * or open load with prompts cut from the test split, follows the server's metrics endpoint, and
 * prints the serving figures, writes bench.json and draws PNG charts.
 */
@Command(name = "bench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Load-test a server over gRPC: throughput, TTFT, TPOT, inter-token and end-to-end latency,"
                + " errors by status and expert load balance; or run a stress scenario with a verdict.",
            "Without --target it serves --model itself on 127.0.0.1 (a free port), like `cmoe demo`."})
public final class BenchCommand implements Callable<Integer> {
    @Option(names = "--model", description = "Model to serve in-process (default: models/brown-llama); with --target,"
            + " only its tokenizer is used, for prompts of exact token counts.")
    Path model;

    @Option(names = "--target", description = "HOST:PORT of a running server instead of an in-process one.")
    String target;

    @Option(names = "--metrics", description = "The target's metrics endpoint (HOST:PORT or URL; `serve"
            + " --metrics-port`). In-process: always on.")
    String metrics;

    @Mixin
    AuthTokenOption auth;

    @Option(names = "--api", defaultValue = "grpc", description = "grpc | http: send the load over gRPC or the"
            + " OpenAI-compatible HTTP API (streamed /v1/completions); TTFT and TPOT are measured alike"
            + " (default: ${DEFAULT-VALUE}).")
    String api;

    @Option(names = "--http-target", description = "With --target and --api http: the target's API root,"
            + " http://HOST:PORT/v1 (its gRPC --target still answers model info).")
    String httpTarget;

    @Option(names = "--scenario", description = "saturate | skew | cancel-storm | soak | worker-loss (default: a"
            + " plain load).")
    String scenario;

    @Option(names = "--concurrency", split = ",", description = "Closed loop: clients at once; a list (1,4,16) runs"
            + " one load per value and plots throughput vs concurrency.")
    List<Integer> concurrency;

    @Option(names = "--rate", description = "Open loop: mean arrivals per second.")
    Double rate;

    @Option(names = "--burstiness", defaultValue = "1", description = "Open loop: coefficient of variation of the"
            + " gaps; 1 = Poisson, > 1 = bursty gamma arrivals (default: ${DEFAULT-VALUE}).")
    double burstiness;

    @Option(names = "--requests", description = "Requests per load (default: 100; 0 = until --duration).")
    Integer requests;

    @Option(names = "--warmup", defaultValue = "0", description = "Untimed requests before the first load, at its"
            + " concurrency (1 for --rate) and with its lengths, so that the server's JIT and caches are warm; they"
            + " are in no table, but the server's metrics count them (default: ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--duration", converter = DurationConverter.class, description = "Time bound of each load:"
            + " 30s, 5m, 1h (default: 10m; soak 10m).")
    Duration duration;

    @Option(names = "--input-len", description = "Prompt tokens: N, A-B or normal:MEAN:SD (default: 16-64).")
    String inputLen;

    @Option(names = "--output-len", description = "Output tokens (max_new_tokens): N, A-B or normal:MEAN:SD"
            + " (default: 32).")
    String outputLen;

    @Option(names = "--prompts", description = "Text to cut prompts from (default: the corpus test split).")
    Path prompts;

    @Option(names = "--seed", defaultValue = "1", description = "Seed of prompts, lengths and arrivals (default:"
            + " ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--temperature", defaultValue = "0", description = "Sampling temperature (default: greedy).")
    double temperature;

    @Option(names = "--ignore-eos", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "Generate exactly the sampled output length (default: on; --no-ignore-eos stops at EOS).")
    boolean ignoreEos;

    @Option(names = "--timeout", converter = DurationConverter.class, defaultValue = "120s",
            description = "Deadline of each call (default: ${DEFAULT-VALUE}).")
    Duration timeout;

    @Option(names = "--drain-timeout", converter = DurationConverter.class, defaultValue = "30s",
            description = "After a load, how long the server may take to empty its batch and KV cache before what is"
                    + " left counts as leaked (default: ${DEFAULT-VALUE}).")
    Duration drainTimeout;

    @Option(names = "--factor", defaultValue = "2", description = "saturate: offered load as a multiple of the"
            + " sustainable rate (default: ${DEFAULT-VALUE}).")
    double factor;

    @Option(names = "--kill-pid", description = "worker-loss: process id of the worker to kill (SIGKILL).")
    Long killPid;

    @Option(names = "--kill-after", converter = DurationConverter.class, description = "worker-loss: when to kill"
            + " it (default: a third of --duration).")
    Duration killAfter;

    @Option(names = "--reference", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "worker-loss: run the same requests once without the kill first and require equal tokens"
                    + " from every call that completes in both (default: on).")
    boolean reference;

    @Option(names = "--rebalance", defaultValue = "none", description = "skew against a cluster head: after the"
            + " skewed phase re-place its experts and run the skewed phase again; head = the head's own policy,"
            + " plan = an EPLB plan (hot experts replicated) from the skewed phase's load, none = no third phase"
            + " (default: ${DEFAULT-VALUE}). Needs --target and --auth-token-file.")
    String rebalance;

    @Option(names = "--spare-slots", description = "skew with --rebalance plan: replicas beyond one per expert"
            + " (default: layers × (devices - 1), room for each layer's hottest expert on every device).")
    Integer spareSlots;

    /** The in-process server's limits; with --target, the target's --max-queue/--max-running for the verdicts. */
    @Mixin
    SchedulerOptions scheduler;

    @Option(names = "--scrape-interval", converter = DurationConverter.class, defaultValue = "1s",
            description = "How often to read the metrics endpoint (default: ${DEFAULT-VALUE}).")
    Duration scrapeInterval;

    @Option(names = "--out", description = "Directory for bench.json and the PNGs (default:"
            + " ~/.cache/cmoe/bench/NAME-TIME).")
    Path out;

    @Option(names = "--quiet", description = "No progress bar.")
    boolean quiet;

    /** The result of a run, for callers that check it (tests); the exit code says PASS or FAIL. */
    private BenchReport report;

    @Override
    public Integer call() throws Exception {
        PrintStream stdout = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        report = run(stdout);
        return report.verdict() == null || report.verdict().pass() ? 0 : 1;
    }

    public BenchReport report() {
        return report;
    }

    /** Runs the bench and returns its report (also printed, written and drawn). */
    public BenchReport run(PrintStream stdout) throws Exception {
        Scenario sc = Scenario.of(scenario);
        applyDefaults(sc);
        LengthDistribution input = LengthDistribution.parse(inputLen);
        LengthDistribution output = LengthDistribution.parse(outputLen);
        checkFlags(sc, output);
        Path text = prompts != null ? prompts : promptText();
        try (BenchTarget t = BenchTarget.open(inProcessServer(), target, metrics, httpTarget, model,
                BenchTarget.Api.of(api), auth.read())) {
            report = measure(sc, t, input, output, text);
        }
        write(stdout, sc);
        return report;
    }

    private void checkFlags(Scenario sc, LengthDistribution output) {
        BenchTarget.Api transport = BenchTarget.Api.of(api);
        if (sc == Scenario.WORKER_LOSS && (killPid == null || target == null)) {
            throw new IllegalArgumentException("worker-loss kills a worker of a running cluster: give --target"
                    + " HOST:PORT of its head and --kill-pid PID of one worker");
        }
        if (rebalanceMode() != null && (sc != Scenario.SKEW || target == null || auth.file == null)) {
            throw new IllegalArgumentException("--rebalance " + rebalance + " re-places a cluster head's experts"
                    + " during --scenario skew: give --scenario skew, --target HEAD:PORT and --auth-token-file");
        }
        if (spareSlots != null && rebalanceMode() != HeadRebalance.Mode.PLAN) {
            throw new IllegalArgumentException("--spare-slots sizes an EPLB plan: it goes with --rebalance plan");
        }
        if (sc == Scenario.CANCEL_STORM && output.max() < 2) {
            throw new IllegalArgumentException("cancel-storm cancels mid-stream: --output-len must allow >= 2 tokens,"
                    + " got " + output);
        }
        if (transport == BenchTarget.Api.HTTP && sc == Scenario.WORKER_LOSS) {
            throw new IllegalArgumentException("worker-loss compares the token ids of two runs, which the HTTP API"
                    + " does not report: run it with --api grpc");
        }
        if (transport == BenchTarget.Api.HTTP && target != null && httpTarget == null) {
            throw new IllegalArgumentException("--api http with --target needs --http-target http://HOST:PORT/v1"
                    + " (the target's serve --http-port)");
        }
        if (httpTarget != null && (transport != BenchTarget.Api.HTTP || target == null)) {
            throw new IllegalArgumentException("--http-target goes with --api http and --target");
        }
    }

    /** Runs the scenario's loads against {@code t} and builds the report. */
    private BenchReport measure(Scenario sc, BenchTarget t, LengthDistribution input, LengthDistribution output,
                                Path text) throws Exception {
        String promptText = Files.readString(text, StandardCharsets.UTF_8);
        PromptSource source = t.tokenizer != null ? PromptSource.tokens(promptText, t.tokenizer)
                : PromptSource.words(promptText);
        long origin = System.nanoTime();
        try (MetricsScraper scraper = t.metricsSpec == null ? null : new MetricsScraper(
                MetricsScraper.endpoint(t.metricsSpec), () -> System.nanoTime() - origin, t.token)
                .start(scrapeInterval)) {
            Workload.Limits limits = limits(t.config, t.info, t.local != null);
            Map<String, Object> setup = setup(sc, t, input, output, text, source, limits);
            try (ProgressBar bar = quiet ? null : Progress.bar("bench", plannedRequests(sc), "req")) {
                LoadRunner.Listener progress = bar == null ? r -> { } : r -> bar.step();
                Workload w = new Workload(t.channel, origin, source, input, output, t.info.getContextLength(),
                        temperature, ignoreEos, seed, timeout, drainTimeout, scraper, limits, t.local != null, progress,
                        t.transport);
                return execute(sc, w, setup, scraper, t.info);
            }
        }
    }

    /** Prints the report and writes bench.json and the charts. */
    private void write(PrintStream stdout, Scenario sc) throws java.io.IOException {
        report.print(stdout);
        Path dir = out != null ? out : BrownCorpus.defaultDataDir().resolveSibling("bench")
                .resolve(sc.label + "-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
        Files.createDirectories(dir);
        report.writeJson(dir.resolve("bench.json"));
        List<Path> charts = report.drawCharts(dir);
        stdout.println("wrote " + dir.resolve("bench.json") + " and " + charts.size() + " charts ("
                + String.join(", ", charts.stream().map(p -> p.getFileName().toString()).toList()) + ")");
    }

    private BenchReport execute(Scenario sc, Workload w, Map<String, Object> setup, MetricsScraper scraper,
                                ModelInfo info) throws InterruptedException {
        String what = info.getModelType() + (info.getRoutedExperts() > 0 ? ", carved: " + info.getSharedExperts()
                + " shared + " + info.getActiveExperts() + " of " + info.getRoutedExperts() + " routed experts" : ", dense");
        List<LoadSummary> loads = new ArrayList<>();
        List<Integer> levels = List.of();
        Scenarios.Outcome outcome = null;
        if (warmup > 0) {
            w.run(LoadRunner.Plan.closed(rate != null ? 1 : concurrency.getFirst(), warmup, duration, timeout),
                    w.requests("warmup", false, 0, -1));
            w.awaitDrained(Duration.ofSeconds(10));
        }
        switch (sc) {
            case LOAD -> {
                if (rate != null) {
                    List<RequestResult> r = w.run(LoadRunner.Plan.open(new Arrivals(rate, burstiness), requests,
                            duration, timeout, seed), w.requests("load", false, 0, 0));
                    loads.add(LoadSummary.of(String.format(Locale.ROOT, "rate %.2f", rate), r));
                } else {
                    for (int c : concurrency) {
                        List<RequestResult> r = w.run(LoadRunner.Plan.closed(c, requests, duration, timeout),
                                w.requests("c" + c, false, 0, c));
                        loads.add(LoadSummary.of("concurrency " + c, r));
                    }
                    levels = concurrency.size() > 1 ? List.copyOf(concurrency) : List.of();
                }
                w.awaitDrained(Duration.ofSeconds(10));
            }
            case SATURATE -> outcome = Scenarios.saturate(w, w.limits().maxRunning() > 0 ? w.limits().maxRunning()
                    : concurrency.getFirst(), 4 * Math.max(8, concurrency.getFirst()), factor, requests, duration);
            case SKEW -> outcome = Scenarios.skew(w, concurrency.getFirst(), requests, duration,
                    rebalanceMode() == null ? null : new HeadRebalance(w.channel(), rebalanceMode(), model, spareSlots,
                            timeout.plusSeconds(60)));
            case CANCEL_STORM -> outcome = Scenarios.cancelStorm(w, concurrency.getFirst(), requests, duration);
            case SOAK -> outcome = Scenarios.soak(w, plan());
            case WORKER_LOSS -> outcome = Scenarios.workerLoss(w, plan(), killPid,
                    killAfter != null ? killAfter : duration.dividedBy(3), reference);
        }
        if (outcome != null) {
            loads.addAll(outcome.loads());
        }
        ServerView view = scraper == null ? null : ServerView.of(scraper.scrapes(), scraper.failures());
        String title = "cmoe bench" + (sc == Scenario.LOAD ? "" : " --scenario " + sc.label) + ": " + what;
        return new BenchReport(title, setup, loads, levels, view, outcome == null ? null : outcome.verdict());
    }

    private HeadRebalance.Mode rebalanceMode() {
        return HeadRebalance.Mode.of(rebalance);
    }

    private LoadRunner.Plan plan() {
        return rate != null ? LoadRunner.Plan.open(new Arrivals(rate, burstiness), requests, duration, timeout, seed)
                : LoadRunner.Plan.closed(concurrency.getFirst(), requests, duration, timeout);
    }

    /** The stress scenarios and the plain load, with the defaults each one is meant to run with. */
    enum Scenario {
        LOAD("load", 100, "16-64", "32", 8),
        SATURATE("saturate", 300, "16-64", "16", 8),
        SKEW("skew", 32, "48-64", "8", 8),
        CANCEL_STORM("cancel-storm", 64, "16-64", "32", 16),
        SOAK("soak", 0, "16-64", "32", 4),
        WORKER_LOSS("worker-loss", 0, "16-64", "32", 8);

        final String label;
        final int requests;
        final String input;
        final String output;
        final int clients;

        Scenario(String label, int requests, String input, String output, int clients) {
            this.label = label;
            this.requests = requests;
            this.input = input;
            this.output = output;
            this.clients = clients;
        }

        static Scenario of(String name) {
            if (name == null) {
                return LOAD;
            }
            for (Scenario s : values()) {
                if (s.label.equals(name) && s != LOAD) {
                    return s;
                }
            }
            throw new IllegalArgumentException("--scenario '" + name + "' is not one of saturate, skew, cancel-storm,"
                    + " soak, worker-loss");
        }
    }

    private void applyDefaults(Scenario sc) {
        if (rate != null && concurrency != null) {
            throw new IllegalArgumentException("--rate (open loop) and --concurrency (closed loop) exclude each other");
        }
        if (rate != null && (sc == Scenario.SATURATE || sc == Scenario.SKEW || sc == Scenario.CANCEL_STORM)) {
            throw new IllegalArgumentException("--scenario " + sc.label + " sets its own load; --rate applies to plain"
                    + " loads, soak and worker-loss");
        }
        if (concurrency == null) {
            concurrency = List.of(sc.clients);
        }
        if (concurrency.isEmpty() || concurrency.stream().anyMatch(c -> c == null || c < 1)) {
            throw new IllegalArgumentException("--concurrency values must be >= 1, got " + concurrency);
        }
        if (concurrency.size() > 1 && sc != Scenario.LOAD) {
            throw new IllegalArgumentException("a list of --concurrency values is a sweep of plain loads, not for"
                    + " --scenario " + sc.label);
        }
        if (requests == null) {
            requests = sc.requests;
        }
        if (warmup < 0) {
            throw new IllegalArgumentException("--warmup must be >= 0 requests, got " + warmup);
        }
        if (duration == null) {
            duration = sc == Scenario.WORKER_LOSS ? Duration.ofSeconds(60) : Duration.ofMinutes(10);
        }
        if (requests == 0 && sc != Scenario.SOAK && sc != Scenario.WORKER_LOSS && duration.toMinutes() >= 10
                && sc != Scenario.LOAD) {
            throw new IllegalArgumentException("--requests 0 runs until --duration; give a --duration");
        }
        if (inputLen == null) {
            inputLen = sc.input;
        }
        if (outputLen == null) {
            outputLen = sc.output;
        }
        if (sc == Scenario.SATURATE && target == null) {
            // a small queue and batch, so the in-process server saturates within seconds
            scheduler.maxQueue = scheduler.maxQueue != null ? scheduler.maxQueue : 8;
            scheduler.maxRunning = scheduler.maxRunning != null ? scheduler.maxRunning : 8;
        }
    }

    private long plannedRequests(Scenario sc) {
        if (requests == 0) {
            return -1;
        }
        return warmup + switch (sc) {
            case LOAD -> rate != null ? requests : (long) requests * concurrency.size();
            case SATURATE -> requests + 4L * Math.max(8, concurrency.getFirst());
            case SKEW -> (rebalanceMode() == null ? 2L : 3L) * requests;
            case WORKER_LOSS -> reference ? 2L * requests : requests;
            default -> requests;
        };
    }

    /** The in-process server's command: this bench's limits, loopback, free ports, metrics and HTTP as needed. */
    private ServeCommand inProcessServer() {
        Path dir = model != null ? model : Paths.shippedModel();
        List<String> args = new ArrayList<>(List.of("--model", dir.toString(), "--host", "127.0.0.1", "--port", "0",
                "--metrics-port", "0", "--max-batch-tokens", Integer.toString(scheduler.maxBatchTokens),
                "--max-kv-bytes", Long.toString(scheduler.maxKvBytes)));
        if (scheduler.maxQueue != null) {
            args.addAll(List.of("--max-queue", scheduler.maxQueue.toString()));
        }
        if (scheduler.maxRunning != null) {
            args.addAll(List.of("--max-running", scheduler.maxRunning.toString()));
        }
        if (BenchTarget.Api.of(api) == BenchTarget.Api.HTTP) {
            args.addAll(List.of("--http-port", "0"));
        }
        if (target == null) {
            System.err.println("cmoe bench: serving " + dir + " on 127.0.0.1 (in-process)");
        }
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs(args.toArray(String[]::new));
        return serve;
    }

    /** The server's limits as the verdicts should see them. */
    private Workload.Limits limits(ModelConfig config, ModelInfo info, boolean inProcess) {
        int queue = scheduler.maxQueue != null ? scheduler.maxQueue : inProcess ? scheduler.queue() : -1;
        int running = !inProcess ? (scheduler.maxRunning != null ? scheduler.maxRunning : -1) : scheduler.running();
        long kv = -1;
        if (config != null && running > 0) {
            long perToken = 2L * config.numLayers() * config.kvDim() * Float.BYTES; // K and V, float32
            kv = running * (long) info.getContextLength() * perToken;
        }
        return new Workload.Limits(queue, running, kv);
    }

    private Map<String, Object> setup(Scenario sc, BenchTarget t, LengthDistribution input, LengthDistribution output,
                                      Path text, PromptSource source, Workload.Limits limits) {
        ModelInfo info = t.info;
        String metricsSpec = t.metricsSpec;
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("target", t.address + (target == null ? " (in-process, " + (model != null ? model : Paths.shippedModel())
                + ")" : ""));
        s.put("api", t.transport.describe());
        s.put("load", sc == Scenario.LOAD || sc == Scenario.SOAK || sc == Scenario.WORKER_LOSS ? plan().describe()
                + (concurrency.size() > 1 ? " (each of " + concurrency + ")" : "") : "set by the scenario");
        s.put("prompt tokens", input + (source.exact() ? "" : " (words: no tokenizer, give --model)"));
        s.put("output tokens", output + (ignoreEos ? " (EOS ignored)" : " (at most; stops at EOS)"));
        s.put("prompts from", text.toString());
        s.put("sampling", temperature == 0 ? "greedy" : "temperature " + temperature);
        s.put("seed", seed);
        s.put("context", info.getContextLength());
        s.put("server limits", "max queue " + (limits.maxQueue() < 0 ? "?" : limits.maxQueue()) + ", max running "
                + (limits.maxRunning() < 0 ? "?" : limits.maxRunning()));
        s.put("placement", info.getPlacement());
        s.put("metrics", metricsSpec == null ? "none (--metrics HOST:PORT for queue, memory and expert load)"
                : metricsSpec);
        s.put("machine", Runtime.getRuntime().availableProcessors() + " cores, load average "
                + String.format(Locale.ROOT, "%.2f", java.lang.management.ManagementFactory.getOperatingSystemMXBean()
                .getSystemLoadAverage()));
        return s;
    }

    private static Path promptText() throws java.io.IOException {
        Path data = BrownCorpus.defaultDataDir();
        Path test = BrownCorpus.splitFile(data, Split.TEST);
        if (!Files.exists(test)) {
            System.err.println("cmoe bench: fetching the corpus for prompts (or give --prompts FILE)");
            BrownCorpus.fetch(data);
        }
        return test;
    }
}
