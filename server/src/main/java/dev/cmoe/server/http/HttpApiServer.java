package dev.cmoe.server.http;

import dev.cmoe.proto.v1.ModelInfo;
import dev.cmoe.server.grpc.ServingGate;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.request.RequestRules;
import dev.cmoe.server.scheduler.SchedulerActor;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.http.HttpMessage;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.util.concurrent.DefaultEventExecutorGroup;
import io.netty.util.concurrent.GlobalEventExecutor;
import io.netty.util.concurrent.EventExecutorGroup;
import io.netty.handler.codec.http.HttpServerCodec;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;

/**
 * The OpenAI-compatible HTTP front end ({@code /v1/completions}, {@code /v1/chat/completions},
 * {@code /v1/models}, {@code /health}) on Netty, beside gRPC: the same scheduler, the same request
 * rules and the same metrics, so a request behaves alike whichever door it comes through.
 */
public final class HttpApiServer implements AutoCloseable {
    /** Largest request body accepted (a prompt of a long context with room to spare). */
    static final int MAX_BODY_BYTES = 4 << 20;

    private final EventLoopGroup boss;
    private final EventLoopGroup workers;
    private final EventExecutorGroup handlers;
    private final ChannelGroup connections;
    private final Channel server;
    private final HttpApiHandler.Api api;

    /**
     * What the HTTP API needs from the server it runs in.
     *
     * @param modelName the id clients send as {@code model} and /v1/models lists
     * @param authToken bearer token every /v1 call must carry, or null
     */
    public record Wiring(ActorSystem<?> system, ActorRef<SchedulerActor.Command> scheduler, RequestRules rules,
                         ChatTemplate template, String modelName, Supplier<ModelInfo> info, ServingGate gate,
                         ServerMetrics metrics, String authToken) {
    }

    private HttpApiServer(EventLoopGroup boss, EventLoopGroup workers, EventExecutorGroup handlers,
                          ChannelGroup connections, Channel server, HttpApiHandler.Api api) {
        this.connections = connections;
        this.boss = boss;
        this.workers = workers;
        this.handlers = handlers;
        this.server = server;
        this.api = api;
    }

    /** Binds {@code host:port} (0 picks a free port) and serves until closed. */
    public static HttpApiServer start(String host, int port, Wiring wiring) throws IOException {
        HttpApiHandler.Api api = new HttpApiHandler.Api(wiring);
        EventLoopGroup boss = new MultiThreadIoEventLoopGroup(1, NioIoHandler.newFactory());
        EventLoopGroup workers = new MultiThreadIoEventLoopGroup(2, NioIoHandler.newFactory());
        // Parsing, chat-template rendering and tokenising run here, off the I/O threads, so a long
        // prompt delays only its own request, not every connection of its event loop.
        EventExecutorGroup handlers = new DefaultEventExecutorGroup(4);
        ChannelGroup connections = new DefaultChannelGroup(GlobalEventExecutor.INSTANCE);
        try {
            Channel ch = new ServerBootstrap().group(boss, workers).channel(NioServerSocketChannel.class)
                    .childHandler(new ChannelInitializer<SocketChannel>() {
                        @Override
                        protected void initChannel(SocketChannel c) {
                            connections.add(c);
                            c.pipeline().addLast(new HttpServerCodec(), new BoundedBody())
                                    .addLast(handlers, new HttpApiHandler(api));
                        }
                    }).bind(new InetSocketAddress(host, port)).sync().channel();
            return new HttpApiServer(boss, workers, handlers, connections, ch, api);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            shutdown(boss, workers, handlers);
            throw new IOException("interrupted while binding the HTTP API to " + host + ":" + port, e);
        } catch (RuntimeException e) {
            shutdown(boss, workers, handlers);
            throw new IOException("could not bind the HTTP API to " + host + ":" + port + ": " + e.getMessage(), e);
        }
    }

    public int port() {
        return ((InetSocketAddress) server.localAddress()).getPort();
    }

    /** From now on new completions get 503 and /health reports draining; running ones go on. */
    public void startDraining() {
        api.startDraining();
    }

    /** Completions in flight now. */
    public int inFlight() {
        return api.inFlight();
    }

    /**
     * Drains: refuses new completions, waits up to {@code grace} for the running ones to end, then
     * closes every connection.
     */
    public void close(Duration grace) throws InterruptedException {
        api.startDraining();
        api.awaitIdle(grace);
        server.close().sync();
        // connections first, while every executor is up: closing one runs its handlers' teardown
        connections.close().awaitUninterruptibly(5, TimeUnit.SECONDS);
        shutdown(boss, workers, handlers);
    }

    @Override
    public void close() throws InterruptedException {
        close(Duration.ofSeconds(5));
    }

    /** The body aggregator, answering an oversized body with a 413 OpenAI error object instead of a bare status. */
    private static final class BoundedBody extends HttpObjectAggregator {
        /** How long the rest of an oversized body may take to arrive before the connection is closed anyway. */
        static final long DRAIN_SECONDS = 5;

        private boolean draining; // the 413 is sent: the rest of the body is read and dropped, then we close

        BoundedBody() {
            super(MAX_BODY_BYTES);
        }

        @Override
        protected void handleOversizedMessage(ChannelHandlerContext ctx, HttpMessage oversized) {
            ApiError e = ApiError.tooLarge("the request body is over the limit of " + MAX_BODY_BYTES + " bytes");
            if (oversized instanceof io.netty.handler.codec.http.LastHttpContent) {
                HttpApiHandler.writeJson(ctx.channel(), e.status(), e.toJson(), false); // all read: close now
                return;
            }
            // Closing while the client still sends would reset the connection, and the reset can
            // destroy the 413 before the client reads it: drop the rest of the body, then close.
            HttpApiHandler.writeJson(ctx.channel(), e.status(), e.toJson(),
                    io.netty.handler.codec.http.HttpHeaderValues.CLOSE);
            draining = true;
            ctx.executor().schedule(() -> {
                ctx.close();
            }, DRAIN_SECONDS, TimeUnit.SECONDS);
        }

        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) throws Exception {
            if (draining && msg instanceof io.netty.handler.codec.http.HttpContent content) {
                boolean last = content instanceof io.netty.handler.codec.http.LastHttpContent;
                content.release();
                if (last) {
                    ctx.close();
                }
                return;
            }
            super.channelRead(ctx, msg);
        }
    }

    private static void shutdown(EventExecutorGroup... groups) {
        for (EventExecutorGroup g : groups) {
            g.shutdownGracefully(0, 2, TimeUnit.SECONDS).awaitUninterruptibly(5, TimeUnit.SECONDS);
        }
    }
}
