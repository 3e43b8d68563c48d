package dev.cmoe.server.http;

import com.google.gson.JsonArray;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.scheduler.FinishReason;
import dev.cmoe.server.scheduler.GenerationRequest;
import dev.cmoe.server.scheduler.SchedulerActor;
import dev.cmoe.server.scheduler.StepOutput;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import io.netty.handler.codec.http.DefaultHttpContent;
import io.netty.handler.codec.http.DefaultHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.LastHttpContent;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * One HTTP completion's bridge from the scheduler to the connection, the HTTP counterpart of the
 * gRPC {@code StreamActor}: it submits the request, writes server-sent events (or one JSON body
 * at the end) and gives the scheduler a credit back for each event once Netty has written it, so
 * a slow reader stalls only its own sequence. A connection that closes cancels the sequence at once.
 */
public final class CompletionStream extends AbstractBehavior<CompletionStream.Command> {

    /** Messages the stream accepts. */
    public sealed interface Command {
    }

    /** Submits the request to the scheduler. */
    public enum Start implements Command { INSTANCE }

    /** Netty wrote one event to the socket: its credit goes back to the scheduler. */
    private enum Written implements Command { INSTANCE }

    /** The connection closed (the client went away, or a write failed). */
    private enum ClientGone implements Command { INSTANCE }

    private record FromScheduler(SchedulerActor.Event event) implements Command {
    }

    /** What the request is answered with: its ids and names, fixed before it is submitted. */
    record Reply(String id, long created, String model, OpenAiRequest request) {
    }

    private final GenerationRequest request;
    private final Reply reply;
    private final Channel channel;
    private final boolean keepAlive;
    private final ActorRef<SchedulerActor.Command> scheduler;
    private final ServerMetrics metrics;
    private final TextTokenizer tokenizer;
    private final Runnable onDone;
    private final ActorRef<SchedulerActor.Event> events;
    private final ChannelFutureListener closed;
    private final StringBuilder text = new StringBuilder();
    private final List<int[]> tokenIds = new ArrayList<>();
    private final List<StepOutput.Logprobs> logprobs = new ArrayList<>();
    private int textOffset;
    private boolean headersSent;
    private boolean failedInStream;
    private boolean done;

    /**
     * @param onDone called once when the exchange ends, however it ends (the server counts
     *        requests in flight for draining)
     */
    public static Behavior<Command> create(GenerationRequest request, Reply reply, Channel channel, boolean keepAlive,
                                           ActorRef<SchedulerActor.Command> scheduler, ServerMetrics metrics,
                                           TextTokenizer tokenizer, Runnable onDone) {
        return Behaviors.setup(ctx -> new CompletionStream(ctx, request, reply, channel, keepAlive, scheduler, metrics,
                tokenizer, onDone));
    }

    private CompletionStream(ActorContext<Command> context, GenerationRequest request, Reply reply, Channel channel,
                             boolean keepAlive, ActorRef<SchedulerActor.Command> scheduler, ServerMetrics metrics,
                             TextTokenizer tokenizer, Runnable onDone) {
        super(context);
        this.request = request;
        this.reply = reply;
        this.channel = channel;
        this.keepAlive = keepAlive;
        this.scheduler = scheduler;
        this.metrics = metrics;
        this.tokenizer = tokenizer;
        this.onDone = onDone;
        this.events = context.messageAdapter(SchedulerActor.Event.class, FromScheduler::new);
        ActorRef<Command> self = context.getSelf();
        this.closed = f -> self.tell(ClientGone.INSTANCE);
        channel.closeFuture().addListener(closed);
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(Start.class, m -> {
                    scheduler.tell(new SchedulerActor.Submit(request, events));
                    return this;
                })
                .onMessage(Written.class, m -> {
                    scheduler.tell(new SchedulerActor.Credit(request.requestId(), 1));
                    return this;
                })
                .onMessage(ClientGone.class, m -> gone())
                .onMessage(FromScheduler.class, this::onEvent)
                .onSignal(PostStop.class, s -> {
                    finish();
                    return this;
                })
                .build();
    }

    private Behavior<Command> gone() {
        if (done) {
            return Behaviors.stopped();
        }
        scheduler.tell(new SchedulerActor.Cancel(request.requestId()));
        metrics.requestFinished("CANCELLED");
        done = true;
        return Behaviors.stopped();
    }

    private boolean streaming() {
        return reply.request().stream();
    }

    private Behavior<Command> onEvent(FromScheduler m) {
        switch (m.event()) {
            case SchedulerActor.Rejected r -> {
                ApiError e = switch (r.reason()) {
                    case QUEUE_FULL -> ApiError.queueFull(r.message());
                    case TOO_LARGE -> ApiError.invalid(null, r.message());
                    case DUPLICATE_ID -> ApiError.internal("request id " + r.requestId() + " is already in use");
                };
                return fail(e);
            }
            case SchedulerActor.Tokens t -> {
                if (streaming()) {
                    send(chunk(t.text(), t.tokenIds(), t.logprobs(), null), true);
                } else {
                    text.append(t.text());
                    tokenIds.add(t.tokenIds());
                    logprobs.addAll(t.logprobs());
                    scheduler.tell(new SchedulerActor.Credit(request.requestId(), 1));
                }
            }
            case SchedulerActor.Failed f -> {
                ApiError e = f.unavailable() ? ApiError.unavailable(f.message()) : ApiError.internal(f.message());
                if (!headersSent) {
                    return fail(e);
                }
                // Streaming began: the error travels as an event, and the Finished that follows ends it.
                send(e.toJson(), false);
                failedInStream = true;
                metrics.requestFinished(e.grpcCode());
            }
            case SchedulerActor.Finished f -> {
                return finished(f);
            }
        }
        return this;
    }

    private Behavior<Command> finished(SchedulerActor.Finished f) {
        if (failedInStream) {
            endStream();
            return Behaviors.stopped();
        }
        if (f.reason() == FinishReason.ABORTED || f.reason() == FinishReason.ERROR) {
            ApiError e = ApiError.internal("the request ended early: " + f.reason().name().toLowerCase(java.util.Locale.ROOT));
            if (!headersSent) {
                return fail(e);
            }
            send(e.toJson(), false);
            endStream();
            metrics.requestFinished(f.reason() == FinishReason.ABORTED ? "ABORTED" : "INTERNAL");
            return Behaviors.stopped();
        }
        String reason = f.reason() == FinishReason.LENGTH ? "length" : "stop";
        JsonObject usage = new JsonObject();
        usage.addProperty("prompt_tokens", f.promptTokens());
        usage.addProperty("completion_tokens", f.completionTokens());
        usage.addProperty("total_tokens", f.promptTokens() + f.completionTokens());
        if (streaming()) {
            send(chunk("", new int[0], List.of(), reason), false);
            if (reply.request().includeUsage()) {
                JsonObject last = base(true);
                last.add("choices", new JsonArray());
                last.add("usage", usage);
                send(last, false);
            }
            endStream();
        } else {
            JsonObject body = base(false);
            JsonObject choice = new JsonObject();
            choice.addProperty("index", 0);
            if (reply.request().kind() == OpenAiRequest.Kind.CHAT) {
                JsonObject message = new JsonObject();
                message.addProperty("role", "assistant");
                message.addProperty("content", text.toString());
                message.add("refusal", JsonNull.INSTANCE);
                choice.add("message", message);
            } else {
                choice.addProperty("text", text.toString());
            }
            int[] all = tokenIds.stream().flatMapToInt(java.util.Arrays::stream).toArray();
            choice.add("logprobs", logprobsJson(all, logprobs));
            choice.addProperty("finish_reason", reason);
            JsonArray choices = new JsonArray();
            choices.add(choice);
            body.add("choices", choices);
            body.add("usage", usage);
            HttpApiHandler.writeJson(channel, HttpResponseStatus.OK, body, keepAlive);
        }
        metrics.requestFinished("OK");
        done = true;
        return Behaviors.stopped();
    }

    private Behavior<Command> fail(ApiError e) {
        metrics.requestFinished(e.grpcCode());
        done = true;
        if (headersSent) {
            send(e.toJson(), false);
            endStream();
        } else {
            HttpApiHandler.writeJson(channel, e.status(), e.toJson(), keepAlive);
        }
        return Behaviors.stopped();
    }

    /** The fields every response and chunk carries. */
    private JsonObject base(boolean chunk) {
        JsonObject o = new JsonObject();
        o.addProperty("id", reply.id());
        boolean chat = reply.request().kind() == OpenAiRequest.Kind.CHAT;
        o.addProperty("object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
        o.addProperty("created", reply.created());
        o.addProperty("model", reply.model());
        o.add("system_fingerprint", JsonNull.INSTANCE);
        if (chunk && reply.request().includeUsage()) {
            o.add("usage", JsonNull.INSTANCE); // OpenAI sends usage: null on every chunk but the last
        }
        return o;
    }

    private JsonObject chunk(String piece, int[] ids, List<StepOutput.Logprobs> lps, String finishReason) {
        JsonObject o = base(true);
        JsonObject choice = new JsonObject();
        choice.addProperty("index", 0);
        if (reply.request().kind() == OpenAiRequest.Kind.CHAT) {
            JsonObject delta = new JsonObject();
            if (!headersSent) {
                delta.addProperty("role", "assistant");
            }
            if (finishReason == null) {
                delta.addProperty("content", piece);
            }
            choice.add("delta", delta);
        } else {
            choice.addProperty("text", piece);
        }
        choice.add("logprobs", finishReason == null ? logprobsJson(ids, lps) : JsonNull.INSTANCE);
        if (finishReason == null) {
            choice.add("finish_reason", JsonNull.INSTANCE);
        } else {
            choice.addProperty("finish_reason", finishReason);
        }
        JsonArray choices = new JsonArray();
        choices.add(choice);
        o.add("choices", choices);
        return o;
    }

    /** Logprobs in the endpoint's shape, or JSON null when the request asked for none. */
    private com.google.gson.JsonElement logprobsJson(int[] ids, List<StepOutput.Logprobs> lps) {
        if (reply.request().logprobs() < 0) {
            return JsonNull.INSTANCE;
        }
        int n = Math.min(ids.length, lps.size());
        if (reply.request().kind() == OpenAiRequest.Kind.CHAT) {
            JsonArray content = new JsonArray();
            for (int i = 0; i < n; i++) {
                JsonObject t = tokenJson(ids[i], lps.get(i).logprob());
                JsonArray top = new JsonArray();
                for (int k = 0; k < lps.get(i).topIds().length; k++) {
                    top.add(tokenJson(lps.get(i).topIds()[k], lps.get(i).topLogprobs()[k]));
                }
                t.add("top_logprobs", top);
                content.add(t);
            }
            JsonObject o = new JsonObject();
            o.add("content", content);
            o.add("refusal", JsonNull.INSTANCE);
            return o;
        }
        JsonArray tokens = new JsonArray();
        JsonArray tokenLogprobs = new JsonArray();
        JsonArray top = new JsonArray();
        JsonArray offsets = new JsonArray();
        for (int i = 0; i < n; i++) {
            String s = token(ids[i]);
            tokens.add(s);
            tokenLogprobs.add(lps.get(i).logprob());
            JsonObject alternatives = new JsonObject();
            for (int k = 0; k < lps.get(i).topIds().length; k++) {
                alternatives.addProperty(token(lps.get(i).topIds()[k]), lps.get(i).topLogprobs()[k]);
            }
            top.add(alternatives);
            offsets.add(textOffset);
            textOffset += s.length();
        }
        JsonObject o = new JsonObject();
        o.add("tokens", tokens);
        o.add("token_logprobs", tokenLogprobs);
        o.add("top_logprobs", top);
        o.add("text_offset", offsets);
        return o;
    }

    private JsonObject tokenJson(int id, float logprob) {
        String s = token(id);
        JsonObject t = new JsonObject();
        t.addProperty("token", s);
        t.addProperty("logprob", logprob);
        JsonArray bytes = new JsonArray();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            bytes.add(b & 0xff);
        }
        t.add("bytes", bytes);
        return t;
    }

    private String token(int id) {
        return tokenizer == null ? "<" + id + ">" : tokenizer.decode(new long[] {id});
    }

    /** Writes one server-sent event; {@code credit}: its write gives the scheduler a credit back. */
    private void send(JsonObject event, boolean credit) {
        if (!headersSent) {
            HttpResponse head = new DefaultHttpResponse(HttpVersion.HTTP_1_1, HttpResponseStatus.OK);
            head.headers().set(HttpHeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8")
                    .set(HttpHeaderNames.CACHE_CONTROL, HttpHeaderValues.NO_CACHE)
                    .set(HttpHeaderNames.TRANSFER_ENCODING, HttpHeaderValues.CHUNKED);
            if (!keepAlive) {
                head.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
            }
            channel.write(head);
            headersSent = true;
        }
        ChannelFuture f = channel.writeAndFlush(new DefaultHttpContent(Unpooled.copiedBuffer("data: " + event
                + "\n\n", StandardCharsets.UTF_8)));
        if (credit) {
            ActorRef<Command> self = getContext().getSelf();
            f.addListener(w -> {
                if (w.isSuccess()) {
                    self.tell(Written.INSTANCE);
                }
            });
        }
    }

    private void endStream() {
        channel.write(new DefaultHttpContent(Unpooled.copiedBuffer("data: [DONE]\n\n", StandardCharsets.UTF_8)));
        ChannelFuture f = channel.writeAndFlush(LastHttpContent.EMPTY_LAST_CONTENT);
        if (!keepAlive) {
            f.addListener(ChannelFutureListener.CLOSE);
        }
        done = true;
    }

    /** Once per exchange: stop watching the connection (it may carry the next request) and count it done. */
    private void finish() {
        channel.closeFuture().removeListener(closed);
        onDone.run();
    }
}
