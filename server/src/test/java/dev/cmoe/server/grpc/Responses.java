package dev.cmoe.server.grpc;

import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Collects one Generate stream on the client side. With {@code initialRequest} ≥ 0 the client
 * takes only that many messages until {@link #request} asks for more: a deliberately slow reader.
 */
final class Responses implements ClientResponseObserver<GenerateRequest, GenerateResponse> {
    final List<GenerateResponse> messages = new CopyOnWriteArrayList<>();
    final CompletableFuture<List<GenerateResponse>> done = new CompletableFuture<>();
    final CountDownLatch first = new CountDownLatch(1);
    private final int initialRequest;
    private volatile ClientCallStreamObserver<GenerateRequest> call;

    Responses(int initialRequest) {
        this.initialRequest = initialRequest;
    }

    /** A reader that takes everything as it comes. */
    static Responses eager() {
        return new Responses(-1);
    }

    @Override
    public void beforeStart(ClientCallStreamObserver<GenerateRequest> requestStream) {
        this.call = requestStream;
        if (initialRequest >= 0) {
            requestStream.disableAutoRequestWithInitial(initialRequest);
        }
    }

    void request(int n) {
        call.request(n);
    }

    void cancel() {
        call.cancel("the test client gave up", null);
    }

    void awaitFirst() throws InterruptedException {
        if (!first.await(20, TimeUnit.SECONDS)) {
            throw new AssertionError("no response within 20 s");
        }
    }

    List<GenerateResponse> await(Duration timeout) throws Exception {
        return done.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    }

    int[] tokens() {
        return messages.stream().filter(GenerateResponse::hasChunk)
                .flatMapToInt(r -> r.getChunk().getTokenIdsList().stream().mapToInt(Integer::intValue)).toArray();
    }

    String text() {
        StringBuilder b = new StringBuilder();
        messages.stream().filter(GenerateResponse::hasChunk).forEach(r -> b.append(r.getChunk().getText()));
        return b.toString();
    }

    @Override
    public void onNext(GenerateResponse value) {
        messages.add(value);
        first.countDown();
    }

    @Override
    public void onError(Throwable t) {
        first.countDown();
        done.completeExceptionally(t);
    }

    @Override
    public void onCompleted() {
        done.complete(List.copyOf(messages));
    }
}
