package dev.cmoe.server.grpc;

import io.grpc.ForwardingServerCall;
import io.grpc.ForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.Status;
import java.io.InputStream;
import java.util.EnumSet;
import java.util.Set;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What stands between every gRPC call and the services: request bytes that do not parse (malformed
 * protobuf, invalid UTF-8 in a string field) answer INVALID_ARGUMENT instead of gRPC's
 * {@code UNKNOWN "Application error processing RPC"} with a stack trace in the log; a service that
 * throws answers INTERNAL; no status a client sees carries a Java class name; client errors are
 * logged through a {@link ClientErrorLog}, at most one line per interval.
 */
public final class EdgeGuard implements ServerInterceptor {
    private static final Logger LOG = LoggerFactory.getLogger(EdgeGuard.class);

    /** Codes that mean the caller got something wrong, not the server. */
    private static final Set<Status.Code> CLIENT_ERRORS = EnumSet.of(Status.Code.INVALID_ARGUMENT,
            Status.Code.UNAUTHENTICATED, Status.Code.PERMISSION_DENIED, Status.Code.NOT_FOUND,
            Status.Code.ALREADY_EXISTS, Status.Code.OUT_OF_RANGE, Status.Code.FAILED_PRECONDITION);
    /** A qualified class name followed by its message, as Throwable.toString writes it: dropped. */
    private static final Pattern QUALIFIED_PREFIX = Pattern.compile(
            "\\b(?:[a-z_$][a-z0-9_$]*\\.)+[A-Z][A-Za-z0-9_$]*(?:Exception|Error|Throwable)(?:\\$[A-Za-z0-9_$]+)*:\\s*");
    /** Any class name left (qualified or simple, e.g. a message-less exception): replaced. */
    private static final Pattern CLASS_NAME = Pattern.compile(
            "\\b(?:[a-z_$][a-z0-9_$]*\\.)*[A-Z][A-Za-z0-9_$]*(?:Exception|Error|Throwable)\\b");
    /** Set by a request marshaller whose parse failed, read by the listener on the same thread. */
    private static final ThreadLocal<String> PARSE_FAILURE = new ThreadLocal<>();

    private final ClientErrorLog clientErrors;

    public EdgeGuard(ClientErrorLog clientErrors) {
        this.clientErrors = clientErrors;
    }

    /** {@code description} without Java class names, as clients may see it. */
    public static String scrub(String description) {
        if (description == null) {
            return null;
        }
        String s = QUALIFIED_PREFIX.matcher(description).replaceAll("");
        s = CLASS_NAME.matcher(s).replaceAll("internal error");
        return s.isBlank() ? "internal error" : s;
    }

    /**
     * {@code service} with every method's request parser replaced by one that, on bytes that do
     * not parse, hands the listener null (and the reason through a thread-local) instead of
     * throwing out of gRPC's transport thread. The schema descriptor is kept, so reflection still
     * describes the service.
     */
    public ServerServiceDefinition guard(ServerServiceDefinition service) {
        ServiceDescriptor old = service.getServiceDescriptor();
        ServiceDescriptor.Builder descriptor = ServiceDescriptor.newBuilder(old.getName())
                .setSchemaDescriptor(old.getSchemaDescriptor());
        java.util.List<ServerMethodDefinition<?, ?>> methods = new java.util.ArrayList<>();
        for (ServerMethodDefinition<?, ?> m : service.getMethods()) {
            ServerMethodDefinition<?, ?> wrapped = wrap(m);
            methods.add(wrapped);
            descriptor.addMethod(wrapped.getMethodDescriptor());
        }
        ServerServiceDefinition.Builder b = ServerServiceDefinition.builder(descriptor.build());
        methods.forEach(m -> add(b, m));
        return ServerInterceptors.intercept(b.build(), this);
    }

    private static <Q, R> void add(ServerServiceDefinition.Builder b, ServerMethodDefinition<Q, R> m) {
        b.addMethod(m);
    }

    private static <Q, R> ServerMethodDefinition<Q, R> wrap(ServerMethodDefinition<Q, R> m) {
        MethodDescriptor<Q, R> method = m.getMethodDescriptor();
        MethodDescriptor.Marshaller<Q> parser = method.getRequestMarshaller();
        String type = method.getRequestMarshaller() instanceof MethodDescriptor.PrototypeMarshaller<?> p
                && p.getMessagePrototype() instanceof com.google.protobuf.Message proto
                ? proto.getDescriptorForType().getFullName() : "request message";
        MethodDescriptor.Marshaller<Q> guarded = new MethodDescriptor.Marshaller<>() {
            @Override
            public InputStream stream(Q value) {
                return parser.stream(value);
            }

            @Override
            public Q parse(InputStream stream) {
                try {
                    return parser.parse(stream);
                } catch (RuntimeException e) {
                    PARSE_FAILURE.set("request is not a valid " + type + ": " + parseProblem(e));
                    return null;
                }
            }
        };
        MethodDescriptor<Q, R> descriptor = method.toBuilder(guarded, method.getResponseMarshaller()).build();
        return ServerMethodDefinition.create(descriptor, m.getServerCallHandler());
    }

    /** The protobuf library's own words ("Protocol message had invalid UTF-8."), never a class name. */
    private static String parseProblem(Throwable e) {
        Throwable c = e;
        while (c.getCause() != null && c.getCause() != c) {
            c = c.getCause();
        }
        String m = c.getMessage();
        return m == null ? "its bytes do not decode" : scrub(m);
    }

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                                                       ServerCallHandler<Q, R> next) {
        GuardedCall<Q, R> guarded = new GuardedCall<>(call);
        ServerCall.Listener<Q> delegate;
        try {
            delegate = next.startCall(guarded, headers);
        } catch (RuntimeException e) {
            guarded.failInternally(e);
            return new ServerCall.Listener<>() {
            };
        }
        return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(delegate) {
            @Override
            public void onMessage(Q message) {
                if (guarded.closed) {
                    return;
                }
                if (message == null) {
                    String problem = PARSE_FAILURE.get();
                    PARSE_FAILURE.remove();
                    guarded.close(Status.INVALID_ARGUMENT.withDescription(
                            problem == null ? "request message does not decode" : problem), new Metadata());
                    return;
                }
                run(() -> super.onMessage(message));
            }

            @Override
            public void onHalfClose() {
                if (!guarded.closed) {
                    run(super::onHalfClose);
                }
            }

            @Override
            public void onReady() {
                if (!guarded.closed) {
                    run(super::onReady);
                }
            }

            private void run(Runnable r) {
                try {
                    r.run();
                } catch (RuntimeException e) {
                    guarded.failInternally(e);
                }
            }
        };
    }

    /** Scrubs every status on its way out and counts the client errors. */
    private final class GuardedCall<Q, R> extends ForwardingServerCall.SimpleForwardingServerCall<Q, R> {
        volatile boolean closed;

        GuardedCall(ServerCall<Q, R> delegate) {
            super(delegate);
        }

        @Override
        public void close(Status status, Metadata trailers) {
            if (closed) {
                return;
            }
            closed = true;
            Status out = Status.fromCode(status.getCode()).withDescription(scrub(status.getDescription()));
            if (CLIENT_ERRORS.contains(status.getCode())) {
                clientErrors.record(status.getCode(), getMethodDescriptor().getFullMethodName() + ": "
                        + out.getDescription());
            }
            super.close(out, trailers);
        }

        /** A service threw: a bug on our side, logged once per call with its trace, answered INTERNAL. */
        void failInternally(RuntimeException e) {
            LOG.error("{} failed", getMethodDescriptor().getFullMethodName(), e);
            if (!closed) {
                try {
                    close(Status.INTERNAL.withDescription("internal error"), new Metadata());
                } catch (IllegalStateException alreadyClosed) {
                    // the service closed the call itself before it threw
                }
            }
        }
    }
}
