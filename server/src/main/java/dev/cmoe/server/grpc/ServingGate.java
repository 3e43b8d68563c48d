package dev.cmoe.server.grpc;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * Whether the server can serve now: a cluster head is closed until every routed expert has a
 * live host. Closed, the health service reports NOT_SERVING and new Generate calls are answered
 * UNAVAILABLE at once, naming why, instead of queueing work that cannot run.
 */
public final class ServingGate {
    private volatile String closedBecause; // null while open
    private final List<Consumer<Boolean>> listeners = new CopyOnWriteArrayList<>();

    private ServingGate(String closedBecause) {
        this.closedBecause = closedBecause;
    }

    /** A gate that starts open (single-node serving). */
    public static ServingGate opened() {
        return new ServingGate(null);
    }

    /** A gate that starts closed for {@code why}. */
    public static ServingGate closed(String why) {
        return new ServingGate(why);
    }

    public void open() {
        set(null);
    }

    public void close(String why) {
        set(why);
    }

    /** Null while open, else why the server cannot serve. */
    public String closedBecause() {
        return closedBecause;
    }

    public boolean isOpen() {
        return closedBecause == null;
    }

    /** Calls {@code listener} with the state now and at every change (open = true). */
    public void onChange(Consumer<Boolean> listener) {
        listeners.add(listener);
        listener.accept(isOpen());
    }

    private synchronized void set(String why) {
        boolean was = isOpen();
        closedBecause = why;
        if (was != isOpen()) {
            listeners.forEach(l -> l.accept(isOpen()));
        }
    }
}
