package dev.cmoe.deploy.bench;

import java.time.Duration;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * How the load generator sends one request and times its tokens: over gRPC ({@link GrpcTransport})
 * or the OpenAI-compatible HTTP API ({@link HttpTransport}). Both report a {@link RequestResult}
 * with token arrival times on the same clock, so TTFT and TPOT mean the same whichever is used.
 */
public interface Transport {

    /**
     * Starts {@code issue}; {@code done} is called exactly once, from any thread.
     *
     * @param clock nanoseconds since the run's origin
     * @param timeout the call's deadline
     */
    Call start(long index, LoadRunner.Issue issue, LongSupplier clock, Duration timeout, Consumer<RequestResult> done);

    /** What the report says about the transport ("gRPC", "HTTP /v1/completions at ..."). */
    String describe();

    /** A call in flight. */
    interface Call {
        /** The call outlived its deadline and the drain: cancel it and report it as HUNG. */
        void abandon();
    }
}
