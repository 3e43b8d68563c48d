package dev.cmoe.model.data;

import java.io.IOException;

/** A corpus could not be obtained or failed verification; the message says what failed and what to do. */
public class CorpusFetchException extends IOException {
    private static final long serialVersionUID = 1L;

    /** Creates the exception with an actionable message. */
    public CorpusFetchException(String message) {
        super(message);
    }

    /** Creates the exception with an actionable message and its underlying cause. */
    public CorpusFetchException(String message, Throwable cause) {
        super(message, cause);
    }
}
