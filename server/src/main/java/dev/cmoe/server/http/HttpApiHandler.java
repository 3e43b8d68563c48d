package dev.cmoe.server.http;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.cmoe.proto.v1.ModelInfo;
import dev.cmoe.server.request.InvalidRequestException;
import dev.cmoe.server.scheduler.GenerationRequest;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.pekko.actor.typed.Props;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Routes one connection's requests: health and models are answered here; a completion is parsed,
 * validated by the shared rules and handed to a {@link CompletionStream} actor, which owns the
 * response from then on. Auth, draining and the serving gate are checked first, as gRPC does.
 */
final class HttpApiHandler extends SimpleChannelInboundHandler<FullHttpRequest> {
    private static final Logger LOG = LoggerFactory.getLogger(HttpApiHandler.class);

    private final Api api;

    HttpApiHandler(Api api) {
        this.api = api;
    }

    /** State shared by all connections of one server. */
    static final class Api {
        final HttpApiServer.Wiring w;
        private final byte[] expectedAuth;
        private final long created = System.currentTimeMillis() / 1000;
        private final AtomicLong streams = new AtomicLong();
        private final Object idle = new Object();
        private int inFlight;
        private volatile boolean draining;

        Api(HttpApiServer.Wiring w) {
            this.w = w;
            this.expectedAuth = w.authToken() == null ? null
                    : ("Bearer " + w.authToken().strip()).getBytes(StandardCharsets.UTF_8);
        }

        void startDraining() {
            draining = true;
        }

        int inFlight() {
            synchronized (idle) {
                return inFlight;
            }
        }

        void begin() {
            synchronized (idle) {
                inFlight++;
            }
        }

        void end() {
            synchronized (idle) {
                inFlight--;
                idle.notifyAll();
            }
        }

        void awaitIdle(Duration grace) throws InterruptedException {
            long deadline = System.nanoTime() + grace.toNanos();
            synchronized (idle) {
                while (inFlight > 0) {
                    long left = deadline - System.nanoTime();
                    if (left <= 0) {
                        LOG.warn("{} HTTP completions still running after the {} s grace; closing their connections",
                                inFlight, grace.toSeconds());
                        return;
                    }
                    idle.wait(Math.max(1, left / 1_000_000));
                }
            }
        }

        /** Null while the server takes completions, else why not. */
        String closedBecause() {
            if (draining) {
                return "the server is draining (shutting down); retry on another replica";
            }
            String gate = w.gate().closedBecause();
            return gate == null ? null : "not serving: " + gate;
        }
    }

    @Override
    protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest req) {
        boolean keepAlive = HttpUtil.isKeepAlive(req);
        try {
            route(ctx, req, keepAlive);
        } catch (ApiError e) {
            if (e.status().code() != 404 || e.param() != null) {
                api.w.metrics().requestFinished(e.grpcCode());
            }
            writeJson(ctx.channel(), e.status(), e.toJson(), keepAlive);
        } catch (RuntimeException e) {
            LOG.error("HTTP request {} {} failed", req.method(), req.uri(), e);
            api.w.metrics().requestFinished("INTERNAL");
            writeJson(ctx.channel(), HttpResponseStatus.INTERNAL_SERVER_ERROR,
                    ApiError.internal("the server failed on this request").toJson(), keepAlive);
        }
    }

    private void route(ChannelHandlerContext ctx, FullHttpRequest req, boolean keepAlive) throws ApiError {
        String path = new QueryStringDecoder(req.uri()).path();
        if (path.length() > 1 && path.endsWith("/")) {
            path = path.substring(0, path.length() - 1);
        }
        if (path.equals("/health")) {
            requireMethod(req, HttpMethod.GET, path);
            String closed = api.closedBecause();
            JsonObject body = new JsonObject();
            body.addProperty("status", closed == null ? "ok" : api.draining ? "draining" : "not_serving");
            if (closed != null) {
                body.addProperty("reason", closed);
            }
            writeJson(ctx.channel(), closed == null ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE,
                    body, keepAlive);
            return;
        }
        if (!path.startsWith("/v1/")) {
            throw ApiError.notFound("no such path: " + path + " (the API is under /v1, health at /health)");
        }
        authorize(req);
        switch (path) {
            case "/v1/models" -> {
                requireMethod(req, HttpMethod.GET, path);
                JsonObject list = new JsonObject();
                list.addProperty("object", "list");
                JsonArray data = new JsonArray();
                data.add(model());
                list.add("data", data);
                writeJson(ctx.channel(), HttpResponseStatus.OK, list, keepAlive);
            }
            case "/v1/completions" -> complete(ctx, req, OpenAiRequest.Kind.COMPLETION, keepAlive);
            case "/v1/chat/completions" -> complete(ctx, req, OpenAiRequest.Kind.CHAT, keepAlive);
            default -> {
                if (path.startsWith("/v1/models/")) {
                    requireMethod(req, HttpMethod.GET, path);
                    String id = QueryStringDecoder.decodeComponent(path.substring("/v1/models/".length()));
                    if (!id.equals(api.w.modelName())) {
                        throw ApiError.modelNotFound(id, api.w.modelName());
                    }
                    writeJson(ctx.channel(), HttpResponseStatus.OK, model(), keepAlive);
                    return;
                }
                throw ApiError.notFound("no such path: " + path);
            }
        }
    }

    private void complete(ChannelHandlerContext ctx, FullHttpRequest req, OpenAiRequest.Kind kind, boolean keepAlive)
            throws ApiError {
        requireMethod(req, HttpMethod.POST, new QueryStringDecoder(req.uri()).path());
        long arrival = System.nanoTime();
        String closed = api.closedBecause();
        if (closed != null) {
            throw ApiError.unavailable(closed);
        }
        OpenAiRequest r = OpenAiRequest.parse(kind, req.content().toString(StandardCharsets.UTF_8), api.w.template());
        if (!r.model().equals(api.w.modelName())) {
            throw ApiError.modelNotFound(r.model(), api.w.modelName());
        }
        String id = (kind == OpenAiRequest.Kind.CHAT ? "chatcmpl-" : "cmpl-") + UUID.randomUUID();
        GenerationRequest g;
        try {
            g = api.w.rules().validate(r.spec().withRequestId(id), arrival);
        } catch (InvalidRequestException e) {
            throw ApiError.invalid(e.field(), e.getMessage());
        }
        CompletionStream.Reply reply = new CompletionStream.Reply(id, System.currentTimeMillis() / 1000,
                api.w.modelName(), r);
        api.begin();
        try {
            var stream = api.w.system().systemActorOf(CompletionStream.create(g, reply, ctx.channel(), keepAlive,
                            api.w.scheduler(), api.w.metrics(), api.w.rules().tokenizer(), api::end),
                    "http-" + api.streams.incrementAndGet(), Props.empty());
            stream.tell(CompletionStream.Start.INSTANCE);
        } catch (RuntimeException e) {
            api.end();
            throw e;
        }
    }

    /** The served model as /v1/models lists it, with the carving in {@code metadata}. */
    private JsonObject model() {
        ModelInfo info = api.w.info().get();
        JsonObject m = new JsonObject();
        m.addProperty("id", api.w.modelName());
        m.addProperty("object", "model");
        m.addProperty("created", api.created);
        m.addProperty("owned_by", "cmoe");
        JsonObject meta = new JsonObject();
        meta.addProperty("architecture", info.getArchitecture());
        meta.addProperty("model_type", info.getModelType());
        meta.addProperty("carved", info.getRoutedExperts() > 0);
        meta.addProperty("routed_experts", info.getRoutedExperts());
        meta.addProperty("active_experts", info.getActiveExperts());
        meta.addProperty("shared_experts", info.getSharedExperts());
        meta.addProperty("layers", info.getLayers());
        meta.addProperty("hidden_size", info.getHiddenSize());
        meta.addProperty("vocab_size", info.getVocabSize());
        meta.addProperty("context_length", info.getContextLength());
        meta.addProperty("placement", info.getPlacement());
        m.add("metadata", meta);
        return m;
    }

    private void authorize(FullHttpRequest req) throws ApiError {
        if (api.expectedAuth == null) {
            return;
        }
        String given = req.headers().get(HttpHeaderNames.AUTHORIZATION);
        // Constant-time comparison: the time to reject must not reveal how much of the token matched.
        if (given == null || !MessageDigest.isEqual(api.expectedAuth, given.getBytes(StandardCharsets.UTF_8))) {
            throw ApiError.unauthorized(given == null ? "missing Authorization header: this server needs"
                    + " 'Authorization: Bearer <token>'" : "the Authorization header does not carry the server's"
                    + " bearer token");
        }
    }

    private static void requireMethod(FullHttpRequest req, HttpMethod method, String path) throws ApiError {
        if (!req.method().equals(method)) {
            throw ApiError.methodNotAllowed(path + " takes " + method + ", got " + req.method());
        }
    }

    /** Writes a complete JSON response; closes the connection after it unless kept alive. */
    static void writeJson(Channel channel, HttpResponseStatus status, JsonObject body, boolean keepAlive) {
        ChannelFuture f = writeJson(channel, status, body, keepAlive ? null : HttpHeaderValues.CLOSE);
        if (!keepAlive) {
            f.addListener(ChannelFutureListener.CLOSE);
        }
    }

    /** Writes {@code body}, with {@code connection} as the Connection header unless null; the caller closes. */
    static ChannelFuture writeJson(Channel channel, HttpResponseStatus status, JsonObject body,
                                   CharSequence connection) {
        FullHttpResponse res = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status,
                Unpooled.copiedBuffer(body.toString(), StandardCharsets.UTF_8));
        res.headers().set(HttpHeaderNames.CONTENT_TYPE, HttpHeaderValues.APPLICATION_JSON)
                .setInt(HttpHeaderNames.CONTENT_LENGTH, res.content().readableBytes());
        if (connection != null) {
            res.headers().set(HttpHeaderNames.CONNECTION, connection);
        }
        return channel.writeAndFlush(res);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        LOG.debug("HTTP connection {} failed: {}", ctx.channel().remoteAddress(), cause.toString());
        ctx.close();
    }
}
