package dev.cmoe.server.request;

/**
 * A request that breaks a rule, with the field it names, so that each front end can answer in its
 * own terms (gRPC INVALID_ARGUMENT, an OpenAI error object with {@code param}) from one check.
 */
public final class InvalidRequestException extends Exception {
    private final String field;

    /**
     * @param field the field as the client spelled it, or null when the rule spans the request
     * @param message names the field and the value it had
     */
    public InvalidRequestException(String field, String message) {
        super(message, null, false, false);
        this.field = field;
    }

    /** The offending field as the client knows it, or null. */
    public String field() {
        return field;
    }
}
