package dev.cmoe.server.moe;

import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * Tells a dead worker process from a slow one without waiting for the failure detector. A step
 * whose device has not answered within {@link RouterActor.Limits#stallAfter()} reports its node
 * ({@link Stalled}); this actor then opens a TCP connection to the node's cluster port. A host that
 * is up answers a connection to a port nobody listens on with a refusal at once, so a refusal
 * means the node's process is gone (killed, crashed), and the watcher tells whoever
 * {@link Attach attached} ({@link Gone}), which re-homes that node's experts seconds before the
 * phi-accrual detector would mark it unreachable. A node that accepts the connection, or does not
 * answer at all (a lost host or link), is left to the failure detector. Probes run off the actor's
 * thread, at most one per node per {@link #PROBE_INTERVAL}.
 */
public final class TransportWatch {
    /** The shortest time between two probes of one node. */
    public static final Duration PROBE_INTERVAL = Duration.ofSeconds(1);
    /** How long a probe's connection attempt may take before the node counts as not refusing. */
    static final Duration CONNECT_TIMEOUT = Duration.ofMillis(500);

    /** What the watcher understands. */
    public sealed interface Command permits Stalled, Attach, Probed {
    }

    /** A step waits on a device of {@code node} longer than expected. */
    public record Stalled(Address node) implements Command {
    }

    /** Who to tell when a node's process is gone. */
    public record Attach(ActorRef<Gone> replyTo) implements Command {
    }

    /** {@code node}'s cluster port refuses connections: its process is gone. */
    public record Gone(Address node, String reason) {
    }

    private record Probed(Address node, String refusal) implements Command {
    }

    private TransportWatch() {
    }

    public static Behavior<Command> create() {
        return Behaviors.setup(ctx -> watching(ctx, null, new HashMap<>()));
    }

    private static Behavior<Command> watching(ActorContext<Command> ctx, ActorRef<Gone> listener,
                                              Map<Address, Long> probedAt) {
        return Behaviors.receive(Command.class)
                .onMessage(Attach.class, a -> watching(ctx, a.replyTo(), probedAt))
                .onMessage(Stalled.class, s -> {
                    long now = System.nanoTime();
                    Long last = probedAt.get(s.node());
                    if (last != null && now - last < PROBE_INTERVAL.toNanos()
                            || s.node().host().isEmpty() || s.node().port().isEmpty()) {
                        return Behaviors.same();
                    }
                    probedAt.put(s.node(), now);
                    Executor blocking = ctx.getSystem().dispatchers().lookup(DispatcherSelector.blocking());
                    ctx.pipeToSelf(CompletableFuture.supplyAsync(() -> refusal(s.node().host().get(),
                            (Integer) s.node().port().get(), CONNECT_TIMEOUT), blocking),
                            (refusal, failure) -> new Probed(s.node(), failure == null ? refusal : null));
                    return Behaviors.same();
                })
                .onMessage(Probed.class, p -> {
                    if (p.refusal() != null) {
                        ctx.getLog().warn("{}: its cluster port refuses connections ({}): the process is gone",
                                p.node(), p.refusal());
                        if (listener != null) {
                            listener.tell(new Gone(p.node(), "its cluster port refuses connections (" + p.refusal()
                                    + ")"));
                        }
                    }
                    return Behaviors.same();
                })
                .build();
    }

    /**
     * Connects to {@code host:port} once: the refusal's message when the connection is refused,
     * null when it is accepted (then closed at once) or times out.
     */
    static String refusal(String host, int port, Duration timeout) {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(host, port), Math.toIntExact(timeout.toMillis()));
            return null;
        } catch (ConnectException e) {
            return e.getMessage() == null ? "connection refused" : e.getMessage();
        } catch (IOException e) {
            return null; // a timeout or an unreachable route: not proof of a dead process
        }
    }
}
