package dev.cmoe.server.scheduler;

/** Why a sequence stopped; mirrors the wire enum so the scheduler does not depend on protobuf types. */
public enum FinishReason {
    /** max_new_tokens reached, or the end of the context. */
    LENGTH,
    /** An end-of-sequence or requested stop token was generated (it is reported). */
    EOS_TOKEN,
    /** A stop string appeared in the text (it is not reported). */
    STOP_SEQUENCE,
    /** Aborted by the Abort call, or the client went away. */
    ABORTED,
    /** A failure inside the request's step. */
    ERROR
}
