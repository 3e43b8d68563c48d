package dev.cmoe.model.config;

/** A config.json that is missing fields, malformed, or describes an architecture we do not run. */
public final class ModelConfigException extends RuntimeException {
    public ModelConfigException(String message) {
        super(message);
    }

    public ModelConfigException(String message, Throwable cause) {
        super(message, cause);
    }
}
