package dev.cmoe.server.scheduler;

import dev.cmoe.model.tokenizer.StreamDecoder;
import dev.cmoe.server.metrics.ServerMetrics;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * Admission and continuous batching. Requests wait in a bounded queue; every step runs one decode
 * token for each running sequence plus prefill chunks of newly admitted ones, up to the token
 * budget, so sequences join and leave between steps. One step is in flight at a time: it runs on
 * the blocking model dispatcher and comes back as {@link StepDone}, so this actor never blocks and
 * keeps answering submits, aborts and credits while the model works.
 */
public final class SchedulerActor extends AbstractBehavior<SchedulerActor.Command> {
    /** The dispatcher (configured in reference.conf) that runs model steps, never the default one. */
    public static final String MODEL_DISPATCHER = "cmoe.model-dispatcher";

    /** Messages the scheduler accepts. */
    public sealed interface Command {
    }

    /** Queues a request; its events go to {@code replyTo}. */
    public record Submit(GenerationRequest request, ActorRef<Event> replyTo) implements Command {
    }

    /** Stops a queued or running request (the Abort call); its stream ends with ABORTED. */
    public record Abort(String requestId, ActorRef<AbortReply> replyTo) implements Command {
    }

    /** The client went away (cancel, deadline): drop the request without telling anyone. */
    public record Cancel(String requestId) implements Command {
    }

    /** The client side delivered {@code chunks} more chunks: that many may be produced again. */
    public record Credit(String requestId, int chunks) implements Command {
    }

    /** Asks for counters, for tests and health. */
    public record GetStats(ActorRef<Stats> replyTo) implements Command {
    }

    private record StepDone(ScheduledBatch batch, StepOutput output, Throwable failure) implements Command {
    }

    /** What the scheduler tells a request's stream. */
    public sealed interface Event {
        String requestId();
    }

    /** Not admitted to the queue. */
    public record Rejected(String requestId, Rejection reason, String message) implements Event {
    }

    /** Newly generated tokens with the text they complete (text may also come without tokens). */
    public record Tokens(String requestId, int[] tokenIds, String text, List<StepOutput.Logprobs> logprobs,
                         int promptTokens, int completionTokens) implements Event {
    }

    /** The last event of a request that was admitted (or aborted while queued). */
    public record Finished(String requestId, FinishReason reason, int promptTokens, int completionTokens,
                           long timeToFirstTokenNanos, long queueNanos) implements Event {
    }

    /**
     * The request's step failed; the stream should end with INTERNAL, or UNAVAILABLE when
     * {@code unavailable} (no capacity to run it). A Finished(ERROR) follows.
     */
    public record Failed(String requestId, String message, boolean unavailable) implements Event {
        public Failed(String requestId, String message) {
            this(requestId, message, false);
        }
    }

    /** Why a request was not queued. */
    public enum Rejection { QUEUE_FULL, DUPLICATE_ID, TOO_LARGE }

    /** Answer to {@link Abort}. */
    public record AbortReply(String requestId, boolean found) {
    }

    /** Scheduler counters. */
    public record Stats(int queued, int running, long kvBytes, long steps) {
    }

    private final ModelRunner runner;
    private final SchedulerConfig config;
    private final ServerMetrics metrics;
    private final Supplier<StreamDecoder> decoders;
    private final Executor modelExecutor;
    private final Deque<Sequence> queue = new ArrayDeque<>();
    private final Map<String, Sequence> running = new LinkedHashMap<>(); // requestId -> sequence, admission order
    private final List<Sequence> releaseAfterStep = new ArrayList<>();   // ended while their cache was in the step
    private ScheduledBatch inFlight;
    private long steps;

    /**
     * @param decoders makes a fresh text decoder per request (the tokenizer's stream decoder)
     */
    public static Behavior<Command> create(ModelRunner runner, SchedulerConfig config, ServerMetrics metrics,
                                           Supplier<StreamDecoder> decoders) {
        // A bug in a handler must not drop every running request: keep the state and go on.
        return Behaviors.<Command>supervise(Behaviors.setup(ctx -> new SchedulerActor(ctx, runner, config, metrics,
                decoders))).onFailure(SupervisorStrategy.resume());
    }

    private SchedulerActor(ActorContext<Command> context, ModelRunner runner, SchedulerConfig config,
                           ServerMetrics metrics, Supplier<StreamDecoder> decoders) {
        super(context);
        this.runner = runner;
        this.config = config;
        this.metrics = metrics;
        this.decoders = decoders;
        this.modelExecutor = context.getSystem().dispatchers().lookup(DispatcherSelector.fromConfig(MODEL_DISPATCHER));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Submit.class, this::onSubmit)
                .onMessage(Abort.class, this::onAbort)
                .onMessage(Cancel.class, this::onCancel)
                .onMessage(Credit.class, this::onCredit)
                .onMessage(GetStats.class, this::onGetStats)
                .onMessage(StepDone.class, this::onStepDone)
                .onSignal(PostStop.class, s -> onPostStop())
                .build();
    }

    private Behavior<Command> onSubmit(Submit m) {
        GenerationRequest r = m.request();
        Sequence s = new Sequence(r, m.replyTo(), new TextStream(decoders.get(), r.stopStrings()),
                runner.contextLength());
        long need = s.maxLength() * runner.kvBytesPerToken();
        if (running.containsKey(r.requestId()) || queue.stream().anyMatch(q -> q.id().equals(r.requestId()))) {
            m.replyTo().tell(new Rejected(r.requestId(), Rejection.DUPLICATE_ID,
                    "request id " + r.requestId() + " is already in use"));
        } else if (config.maxKvBytes() > 0 && need > config.maxKvBytes()) {
            m.replyTo().tell(new Rejected(r.requestId(), Rejection.TOO_LARGE, "request " + r.requestId() + " needs "
                    + need + " KV cache bytes, more than the server's budget of " + config.maxKvBytes()));
        } else {
            // Admit at once when there is room (the sequence joins the next step); only what must
            // wait counts against the queue bound, so --max-queue 0 means "no waiting", not "no service".
            queue.addLast(s);
            admit();
            if (queue.peekLast() == s && queue.size() > config.maxQueue()) {
                queue.removeLast();
                m.replyTo().tell(new Rejected(r.requestId(), Rejection.QUEUE_FULL, "queue is full: "
                        + queue.size() + " requests waiting (--max-queue " + config.maxQueue() + ")"));
            } else {
                step();
            }
        }
        updateGauges();
        return this;
    }

    private Behavior<Command> onAbort(Abort m) {
        boolean found = end(m.requestId(), true);
        m.replyTo().tell(new AbortReply(m.requestId(), found));
        step();
        return this;
    }

    private Behavior<Command> onCancel(Cancel m) {
        end(m.requestId(), false);
        step();
        return this;
    }

    private Behavior<Command> onCredit(Credit m) {
        Sequence s = running.get(m.requestId());
        if (s != null) {
            s.credits += m.chunks();
            step();
        }
        return this;
    }

    private Behavior<Command> onGetStats(GetStats m) {
        m.replyTo().tell(new Stats(queue.size(), running.size(), kvBytes(), steps));
        return this;
    }

    private Behavior<Command> onStepDone(StepDone m) {
        inFlight = null;
        releaseAfterStep.forEach(this::release);
        releaseAfterStep.clear();
        long now = System.nanoTime();
        int produced = 0;
        for (ScheduledBatch.Entry e : m.batch().entries()) {
            Sequence s = running.get(e.requestId());
            if (s == null || s.cache != e.cache()) {
                continue; // ended during the step (its id may even be reused by now)
            }
            String failure = m.failure() != null ? "model step failed: " + cause(m.failure())
                    : m.output().failed().get(e.requestId());
            if (failure != null) {
                s.replyTo.tell(new Failed(s.id(), failure, m.failure() != null && UnavailableException.in(m.failure())));
                finish(s, FinishReason.ERROR, now);
                continue;
            }
            s.fed(e.tokens().length);
            StepOutput.Sampled sampled = m.output().sampled().get(e.requestId());
            if (sampled != null) {
                accept(s, sampled, now);
                produced++;
            }
        }
        metrics.step(m.batch().entries().size(), m.batch().tokenCount(), produced,
                m.output() == null ? 0 : m.output().nanos());
        step();
        updateGauges();
        return this;
    }

    private static String cause(Throwable t) {
        Throwable c = t instanceof java.util.concurrent.CompletionException && t.getCause() != null ? t.getCause() : t;
        return c.getMessage() == null ? c.getClass().getSimpleName() : c.getMessage();
    }

    /** Appends a sampled token, streams it and ends the sequence if it is done. */
    private void accept(Sequence s, StepOutput.Sampled sampled, long now) {
        int token = sampled.token();
        if (s.lastTokenNanos == 0) {
            metrics.timeToFirstToken(now - s.request.arrivalNanos());
        } else {
            metrics.interTokenLatency(now - s.lastTokenNanos);
        }
        s.append(token, now);
        boolean stopToken = s.request.stopTokenIds().contains(token);
        TextStream.Update u = stopToken ? new TextStream.Update("", false) : s.text.push(token);
        FinishReason reason = stopToken ? FinishReason.EOS_TOKEN
                : u.stopped() ? FinishReason.STOP_SEQUENCE
                : s.generated() >= s.limit ? FinishReason.LENGTH : null;
        String text = u.text();
        if (reason != null && reason != FinishReason.STOP_SEQUENCE) {
            TextStream.Update tail = s.text.finish();
            text += tail.text();
            reason = tail.stopped() ? FinishReason.STOP_SEQUENCE : reason;
        }
        s.credits--;
        s.replyTo.tell(new Tokens(s.id(), new int[] {token}, text,
                sampled.logprobs() == null ? List.of() : List.of(sampled.logprobs()), s.promptLength(), s.generated()));
        if (reason != null) {
            finish(s, reason, now);
        }
    }

    /** Ends a queued or running request; returns whether it was found. */
    private boolean end(String requestId, boolean tell) {
        long now = System.nanoTime();
        Sequence s = running.get(requestId);
        if (s == null) {
            s = queue.stream().filter(q -> q.id().equals(requestId)).findFirst().orElse(null);
            if (s == null) {
                return false;
            }
            queue.remove(s);
        }
        if (tell) {
            finish(s, FinishReason.ABORTED, now);
        } else {
            drop(s);
        }
        updateGauges();
        return true;
    }

    private void finish(Sequence s, FinishReason reason, long now) {
        long ttft = s.firstTokenNanos == 0 ? 0 : s.firstTokenNanos - s.request.arrivalNanos();
        long queued = (s.admittedNanos == 0 ? now : s.admittedNanos) - s.request.arrivalNanos();
        s.replyTo.tell(new Finished(s.id(), reason, s.promptLength(), s.generated(), ttft, queued));
        drop(s);
    }

    /** Forgets the sequence; its cache is freed now, or after the step that is using it. */
    private void drop(Sequence s) {
        running.remove(s.id());
        if (inFlight != null && inFlight.entries().stream().anyMatch(e -> e.cache() == s.cache)) {
            releaseAfterStep.add(s);
        } else {
            release(s);
        }
    }

    private void release(Sequence s) {
        if (s.cache != null) {
            s.cache.close();
        }
    }

    /** Admits what fits and starts the next step, unless one is in flight or there is nothing to do. */
    private void step() {
        if (inFlight != null) {
            return;
        }
        admit();
        List<ScheduledBatch.Entry> entries = new ArrayList<>();
        int budget = config.maxBatchTokens();
        // Decode first: one token per running sequence keeps every stream moving ...
        for (Sequence s : running.values()) {
            if (!s.prefilling() && s.runnable() && budget > 0) {
                entries.add(s.entry(s.nextTokens(1)));
                budget--;
            }
        }
        // ... then prefill the newly admitted ones, in admission order, in chunks that fill the rest.
        for (Sequence s : running.values()) {
            if (s.prefilling() && budget > 0) {
                int[] chunk = s.nextTokens(budget);
                entries.add(s.entry(chunk));
                budget -= chunk.length;
            }
        }
        if (entries.isEmpty()) {
            return;
        }
        ScheduledBatch batch = new ScheduledBatch(++steps, entries);
        inFlight = batch;
        CompletableFuture<StepOutput> done = CompletableFuture.supplyAsync(() -> runner.run(batch), modelExecutor);
        getContext().pipeToSelf(done, (out, err) -> new StepDone(batch, out, err));
    }

    private void admit() {
        long budgeted = running.values().stream().mapToLong(s -> s.maxLength() * runner.kvBytesPerToken()).sum();
        while (!queue.isEmpty() && running.size() < config.maxRunning()) {
            Sequence s = queue.peekFirst();
            long need = s.maxLength() * runner.kvBytesPerToken();
            if (config.maxKvBytes() > 0 && budgeted + need > config.maxKvBytes()) {
                break; // first come, first served: later requests wait too
            }
            queue.removeFirst();
            try {
                s.cache = runner.newCache(s.maxLength());
            } catch (RuntimeException e) {
                s.replyTo.tell(new Failed(s.id(), "could not allocate the KV cache: " + e.getMessage()));
                finish(s, FinishReason.ERROR, System.nanoTime());
                continue;
            }
            s.admittedNanos = System.nanoTime();
            s.credits = config.streamWindow();
            metrics.queueTime(s.admittedNanos - s.request.arrivalNanos());
            running.put(s.id(), s);
            budgeted += need;
        }
    }

    private long kvBytes() {
        long sum = 0;
        for (Sequence s : running.values()) {
            sum += s.cache.bytes();
        }
        for (Sequence s : releaseAfterStep) {
            sum += s.cache.bytes();
        }
        return sum;
    }

    private void updateGauges() {
        metrics.scheduler(queue.size(), running.size(), kvBytes());
    }

    private Behavior<Command> onPostStop() {
        // A step still running keeps its caches: freeing them under it would crash the engine,
        // and the model's own close frees them at shutdown.
        for (Sequence s : running.values()) {
            if (inFlight == null || inFlight.entries().stream().noneMatch(e -> e.cache() == s.cache)) {
                release(s);
            }
        }
        return this;
    }
}
