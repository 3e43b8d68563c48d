package dev.cmoe.server.scheduler;

/**
 * A step cannot run for lack of capacity (routed experts without any live host): the requests
 * of the step end with UNAVAILABLE, all of them at once, rather than being retried one by one.
 */
public final class UnavailableException extends RuntimeException {
    public UnavailableException(String message) {
        super(message);
    }

    /** Whether {@code t} or one of its causes is an {@link UnavailableException}. */
    public static boolean in(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof UnavailableException) {
                return true;
            }
        }
        return false;
    }
}
