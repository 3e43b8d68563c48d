package dev.cmoe.server.grpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.server.metrics.ServerMetrics;
import dev.cmoe.server.scheduler.FinishReason;
import dev.cmoe.server.scheduler.GenerationRequest;
import dev.cmoe.server.scheduler.SchedulerActor;
import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The stream bridge alone: a probe plays the scheduler, a fake call plays the transport. */
@Timeout(60)
class StreamActorTest {
    private static final Duration WAIT = Duration.ofSeconds(10);
    private static ActorTestKit testKit;

    @BeforeAll
    static void start() {
        testKit = ActorTestKit.create();
    }

    @AfterAll
    static void stop() {
        testKit.shutdownTestKit();
    }

    /** A transport whose readiness the test decides. */
    static final class FakeCall extends ServerCallStreamObserver<GenerateResponse> {
        final List<GenerateResponse> sent = new CopyOnWriteArrayList<>();
        volatile boolean ready;
        volatile boolean completed;
        volatile Throwable error;

        @Override
        public boolean isCancelled() {
            return false;
        }

        @Override
        public void setOnCancelHandler(Runnable onCancelHandler) {
        }

        @Override
        public void setCompression(String compression) {
        }

        @Override
        public boolean isReady() {
            return ready;
        }

        @Override
        public void setOnReadyHandler(Runnable onReadyHandler) {
        }

        @Override
        public void request(int count) {
        }

        @Override
        public void setMessageCompression(boolean enable) {
        }

        @Override
        @SuppressWarnings("deprecation")
        public void disableAutoInboundFlowControl() {
        }

        @Override
        public void onNext(GenerateResponse value) {
            if (!ready) {
                throw new AssertionError("written while the transport was not ready");
            }
            sent.add(value);
        }

        @Override
        public void onError(Throwable t) {
            error = t;
        }

        @Override
        public void onCompleted() {
            completed = true;
        }
    }

    private record Started(FakeCall call, ActorRef<StreamActor.Command> stream,
                           TestProbe<SchedulerActor.Command> scheduler, ActorRef<SchedulerActor.Event> events) {
    }

    private static Started started() {
        FakeCall call = new FakeCall();
        TestProbe<SchedulerActor.Command> scheduler = testKit.createTestProbe();
        GenerationRequest request = GenerationRequest.greedy("s", new int[] {1, 2, 3}, 10, Set.of());
        ActorRef<StreamActor.Command> stream = testKit.spawn(StreamActor.create(request, call, scheduler.ref(),
                ServerMetrics.discarding()));
        stream.tell(StreamActor.Start.INSTANCE);
        SchedulerActor.Submit submit = scheduler.expectMessageClass(SchedulerActor.Submit.class, WAIT);
        assertEquals("s", submit.request().requestId());
        return new Started(call, stream, scheduler, submit.replyTo());
    }

    private static SchedulerActor.Tokens token(int id, int count) {
        return new SchedulerActor.Tokens("s", new int[] {id}, "t" + id, List.of(), 3, count);
    }

    @Test
    void writesOnlyWhenReadyAndReturnsOneCreditPerChunkWritten() {
        Started s = started();
        for (int i = 1; i <= 3; i++) {
            s.events().tell(token(40 + i, i));
        }
        s.scheduler().expectNoMessage(Duration.ofMillis(200));
        assertTrue(s.call().sent.isEmpty(), "nothing is written while the transport is not ready");
        s.call().ready = true;
        s.stream().tell(StreamActor.ClientReady.INSTANCE);
        SchedulerActor.Credit credit = s.scheduler().expectMessageClass(SchedulerActor.Credit.class, WAIT);
        assertEquals(3, credit.chunks());
        assertEquals(List.of(41, 42, 43), s.call().sent.stream().map(r -> r.getChunk().getTokenIds(0)).toList());
        s.events().tell(new SchedulerActor.Finished("s", FinishReason.LENGTH, 3, 3, 1_000_000, 0));
        s.scheduler().awaitAssert(WAIT, () -> {
            assertTrue(s.call().completed);
            return null;
        });
        assertEquals(dev.cmoe.proto.v1.FinishReason.LENGTH, s.call().sent.getLast().getFinal().getFinishReason());
        assertEquals(1.0, s.call().sent.getLast().getFinal().getTimeToFirstTokenMs());
    }

    @Test
    void aRejectionFailsTheCallWithItsStatus() {
        Started s = started();
        s.events().tell(new SchedulerActor.Rejected("s", SchedulerActor.Rejection.QUEUE_FULL, "queue is full: 3"));
        s.scheduler().awaitAssert(WAIT, () -> {
            Status status = Status.fromThrowable(s.call().error);
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, status.getCode());
            assertEquals("queue is full: 3", status.getDescription());
            return null;
        });
    }

    @Test
    void aCancelledCallCancelsTheRequest() {
        Started s = started();
        s.stream().tell(StreamActor.ClientCancelled.INSTANCE);
        assertEquals("s", s.scheduler().expectMessageClass(SchedulerActor.Cancel.class, WAIT).requestId());
    }
}
