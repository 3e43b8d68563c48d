package dev.cmoe.deploy.bench;

import dev.cmoe.proto.v1.GenerateRequest;
import io.grpc.Channel;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.SplittableRandom;

/**
 * What every load of one run shares: the channel, the prompt text and length mix, the sampling
 * settings, the seed, the metrics endpoint and the time origin. Scenarios build their phases
 * from it, so a scenario's phases differ only in what the scenario changes.
 *
 * @param context the server's context length: prompt + output are clipped to fit it
 * @param drainTimeout how long to wait after a load for the server to empty before calling what is left a leak
 * @param scraper the server's metrics, or null when there is no endpoint
 * @param limits the server's admission limits, as far as they are known
 * @param inProcess whether the server runs in this JVM: its process memory then includes the bench's own
 * @param transport how requests are sent (gRPC or the HTTP API); {@code channel} stays for the
 *        gRPC-only calls (model info, Admin)
 */
public record Workload(Channel channel, long origin, PromptSource prompts, LengthDistribution input,
                      LengthDistribution output, int context, double temperature, boolean ignoreEos, long seed,
                      Duration timeout, Duration drainTimeout, MetricsScraper scraper, Limits limits,
                      boolean inProcess, LoadRunner.Listener progress, Transport transport) {

    /**
     * The server's limits that verdicts compare against; -1 where unknown (a remote server whose
     * flags were not given).
     *
     * @param kvBytesBound KV cache bytes of maxRunning sequences at full context
     */
    public record Limits(int maxQueue, int maxRunning, long kvBytesBound) {
        public static Limits unknown() {
            return new Limits(-1, -1, -1);
        }
    }

    /** Nanoseconds since the origin. */
    public long now() {
        return System.nanoTime() - origin;
    }

    /**
     * Requests for one phase: prompts from the text (or skewed ones), lengths from the mix, and
     * a share {@code cancelShare} of them cancelled after a random number of tokens.
     */
    public LoadRunner.Requests requests(String phase, boolean skewed, double cancelShare, long phaseSeed) {
        SplittableRandom random = new SplittableRandom(seed ^ phaseSeed * 0x9E3779B97F4A7C15L);
        return index -> {
            int out = Math.min(output.sample(random), context - 1);
            int in = Math.max(1, Math.min(input.sample(random), context - out));
            GenerateRequest.Builder r = GenerateRequest.newBuilder().setRequestId(phase + "-" + seed + "-" + index)
                    .setMaxNewTokens(out).setIgnoreEos(ignoreEos).setTemperature(temperature)
                    .setSeed(random.nextLong());
            r = skewed ? prompts.skewedPrompt(r, in) : prompts.prompt(r, in, random);
            int cancelAfter = 0;
            if (cancelShare > 0 && random.nextDouble() < cancelShare && out >= 2) {
                cancelAfter = 1 + random.nextInt(out - 1); // mid-stream: at least one token, before the last
            }
            return new LoadRunner.Issue(r.build(), cancelAfter, phase);
        };
    }

    /** Runs one load and returns its results. */
    public List<RequestResult> run(LoadRunner.Plan plan, LoadRunner.Requests requests) throws InterruptedException {
        return new LoadRunner(transport, origin).run(plan, requests, progress);
    }

    /** A scrape now, or null without an endpoint (or when it fails: the figure is then missing, not wrong). */
    public MetricsScraper.Scrape scrape() throws InterruptedException {
        if (scraper == null) {
            return null;
        }
        try {
            return scraper.scrapeNow();
        } catch (IOException e) {
            return null;
        }
    }

    /** {@link #awaitDrained(Duration)} for {@link #drainTimeout}. */
    public MetricsScraper.Scrape awaitDrained() throws InterruptedException {
        return awaitDrained(drainTimeout);
    }

    /**
     * Waits (at most {@code limit}) until the server reports no queued or running sequence and no
     * KV cache bytes, and returns the last scrape: after a load ends, anything left is a leak.
     */
    public MetricsScraper.Scrape awaitDrained(Duration limit) throws InterruptedException {
        long until = System.nanoTime() + limit.toNanos();
        MetricsScraper.Scrape s = scrape();
        while (s != null && System.nanoTime() < until && !(s.sum(ServerView.RUNNING) == 0
                && s.sum(ServerView.QUEUE) == 0 && s.sum(ServerView.KV) == 0)) {
            Thread.sleep(50);
            s = scrape();
        }
        return s;
    }
}
