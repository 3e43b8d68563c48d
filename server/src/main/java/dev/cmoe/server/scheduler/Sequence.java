package dev.cmoe.server.scheduler;

import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.sample.Sampler;
import java.util.Arrays;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * The scheduler's mutable state of one admitted request: its cache, how much of the prompt is in
 * it, the tokens so far, and its flow-control credits. Owned and touched only by the scheduler
 * actor.
 */
final class Sequence {
    final GenerationRequest request;
    final ActorRef<SchedulerActor.Event> replyTo;
    final Sampler sampler;
    final TextStream text;
    final int limit;           // tokens this sequence may generate: max_new_tokens within the context
    KvCache cache;             // null until admitted
    int prefilled;             // prompt tokens already in the cache
    int[] tokens;              // prompt then generated tokens; `length` of them are valid
    int length;
    int credits;               // chunks the client side can still take before we park the sequence
    long admittedNanos;
    long firstTokenNanos;
    long lastTokenNanos;

    Sequence(GenerationRequest request, ActorRef<SchedulerActor.Event> replyTo, TextStream text, int context) {
        this.request = request;
        this.replyTo = replyTo;
        this.sampler = new Sampler(request.sampling());
        this.text = text;
        this.limit = Math.min(request.maxNewTokens(), context - request.prompt().length);
        this.tokens = Arrays.copyOf(request.prompt(), request.prompt().length + limit);
        this.length = request.prompt().length;
    }

    String id() {
        return request.requestId();
    }

    int promptLength() {
        return request.prompt().length;
    }

    int generated() {
        return length - promptLength();
    }

    /** Cache length this sequence can ever need: the prompt plus every generated token but the last. */
    int maxLength() {
        return promptLength() + limit;
    }

    boolean prefilling() {
        return prefilled < promptLength();
    }

    /** Decoding sequences wait while their client is behind; prefill needs no credit. */
    boolean runnable() {
        return prefilling() || credits > 0;
    }

    /** The next chunk to feed: up to {@code budget} prompt tokens, or the last generated token. */
    int[] nextTokens(int budget) {
        if (prefilling()) {
            int n = Math.min(budget, promptLength() - prefilled);
            return Arrays.copyOfRange(request.prompt(), prefilled, prefilled + n);
        }
        return new int[] {tokens[length - 1]};
    }

    /** Builds this sequence's entry for a step that feeds {@code chunk}. */
    ScheduledBatch.Entry entry(int[] chunk) {
        boolean samples = !prefilling() || prefilled + chunk.length == promptLength();
        int[] banned = generated() < request.minNewTokens()
                ? request.stopTokenIds().stream().mapToInt(Integer::intValue).toArray()
                : new int[0];
        return new ScheduledBatch.Entry(id(), cache, chunk, samples ? sampler : null, Arrays.copyOf(tokens, length),
                banned, request.logprobs());
    }

    /** Records that the step fed {@code n} tokens of this sequence. */
    void fed(int n) {
        if (prefilling()) {
            prefilled += n;
        }
    }

    /** Appends a generated token. */
    void append(int token, long now) {
        tokens[length++] = token;
        if (firstTokenNanos == 0) {
            firstTokenNanos = now;
        }
        lastTokenNanos = now;
    }
}
