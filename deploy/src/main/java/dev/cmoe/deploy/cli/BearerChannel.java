package dev.cmoe.deploy.cli;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.stub.MetadataUtils;
import java.util.concurrent.TimeUnit;

/** A channel that adds a bearer token to every call; shutting it down shuts down the channel under it. */
final class BearerChannel extends ManagedChannel {
    private final ManagedChannel inner;
    private final Channel intercepted;

    BearerChannel(ManagedChannel inner, Metadata headers) {
        this.inner = inner;
        this.intercepted = ClientInterceptors.intercept(inner, MetadataUtils.newAttachHeadersInterceptor(headers));
    }

    @Override
    public <Q, R> ClientCall<Q, R> newCall(MethodDescriptor<Q, R> method, CallOptions options) {
        return intercepted.newCall(method, options);
    }

    @Override
    public String authority() {
        return inner.authority();
    }

    @Override
    public ManagedChannel shutdown() {
        inner.shutdown();
        return this;
    }

    @Override
    public boolean isShutdown() {
        return inner.isShutdown();
    }

    @Override
    public boolean isTerminated() {
        return inner.isTerminated();
    }

    @Override
    public ManagedChannel shutdownNow() {
        inner.shutdownNow();
        return this;
    }

    @Override
    public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
        return inner.awaitTermination(timeout, unit);
    }
}
