package dev.cmoe.server.scheduler;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.generate.Generator;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.tokenizer.StreamDecoder;
import dev.cmoe.server.metrics.ServerMetrics;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The scheduler alone, driven by test probes in place of gRPC streams, on a small random model. */
@Timeout(60)
class SchedulerActorTest {
    private static final Duration WAIT = Duration.ofSeconds(20);
    private static final Set<Integer> EOS = Set.of(2);
    private static ActorTestKit testKit;
    private static LlamaModel model;

    @BeforeAll
    static void start() {
        ModelConfig config = RandomModel.llamaConfig();
        model = LlamaModel.dense(config, RandomModel.of(config, 11));
        testKit = ActorTestKit.create();
    }

    @AfterAll
    static void stop() {
        testKit.shutdownTestKit();
        model.close();
    }

    private static ActorRef<SchedulerActor.Command> scheduler(SchedulerConfig config, ModelRunner runner) {
        return testKit.spawn(SchedulerActor.create(runner, config, ServerMetrics.discarding(),
                () -> StreamDecoder.ofBytes(id -> null)));
    }

    /**
     * Receives events until the Finished one (a bounded number of them) and returns them all,
     * giving back a credit per chunk as the gRPC stream does once it has written one.
     */
    private static List<SchedulerActor.Event> untilFinished(TestProbe<SchedulerActor.Event> probe,
                                                            ActorRef<SchedulerActor.Command> scheduler) {
        List<SchedulerActor.Event> events = new ArrayList<>();
        for (int i = 0; i < 500; i++) {
            SchedulerActor.Event e = probe.receiveMessage(WAIT);
            events.add(e);
            if (e instanceof SchedulerActor.Tokens) {
                scheduler.tell(new SchedulerActor.Credit(e.requestId(), 1));
            }
            if (e instanceof SchedulerActor.Finished || e instanceof SchedulerActor.Rejected) {
                return events;
            }
        }
        throw new AssertionError("no Finished within 500 events");
    }

    private static int[] tokens(List<SchedulerActor.Event> events) {
        return events.stream().filter(e -> e instanceof SchedulerActor.Tokens)
                .flatMapToInt(e -> java.util.Arrays.stream(((SchedulerActor.Tokens) e).tokenIds())).toArray();
    }

    private static int[] prompt(int length, int salt) {
        int[] p = new int[length];
        for (int i = 0; i < length; i++) {
            p[i] = 3 + (i * 7 + salt * 13) % 90;
        }
        return p;
    }

    private static SchedulerActor.Stats stats(ActorRef<SchedulerActor.Command> scheduler) {
        TestProbe<SchedulerActor.Stats> probe = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.GetStats(probe.ref()));
        return probe.receiveMessage(WAIT);
    }

    @Test
    void batchedGreedyTokensEqualGeneratorAlone() {
        int[][] prompts = {prompt(3, 1), prompt(17, 2), prompt(40, 3), prompt(1, 4)};
        int[] maxNew = {12, 5, 20, 9};
        int[][] expected = new int[prompts.length][];
        for (int i = 0; i < prompts.length; i++) {
            expected[i] = Generator.generate(model, prompts[i], maxNew[i], SamplingParams.greedy(), EOS, t -> {
            }).tokens();
        }
        // A small token budget forces chunked prefill next to other sequences' decode steps.
        ActorRef<SchedulerActor.Command> scheduler = scheduler(SchedulerConfig.defaults().withMaxBatchTokens(16),
                new LlamaRunner(model));
        List<TestProbe<SchedulerActor.Event>> probes = new ArrayList<>();
        for (int i = 0; i < prompts.length; i++) {
            TestProbe<SchedulerActor.Event> probe = testKit.createTestProbe();
            probes.add(probe);
            scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("r" + i, prompts[i], maxNew[i], EOS),
                    probe.ref()));
        }
        for (int i = 0; i < prompts.length; i++) {
            List<SchedulerActor.Event> events = untilFinished(probes.get(i), scheduler);
            assertArrayEquals(expected[i], tokens(events), "request r" + i);
            SchedulerActor.Finished f = assertInstanceOf(SchedulerActor.Finished.class, events.getLast());
            assertEquals(expected[i].length, f.completionTokens());
        }
        assertEquals(0, stats(scheduler).kvBytes(), "every cache is freed when its sequence ends");
    }

    @Test
    void seededSamplingReproducesGeneratorWhateverElseIsBatched() {
        SamplingParams params = new SamplingParams(0.9, 20, 0.95, 0.01, 1.1, 1234);
        int[] prompt = prompt(8, 6);
        int[] expected = Generator.generate(model, prompt, 15, params, Set.of(), t -> {
        }).tokens();
        ActorRef<SchedulerActor.Command> scheduler = scheduler(SchedulerConfig.defaults(), new LlamaRunner(model));
        TestProbe<SchedulerActor.Event> noise = testKit.createTestProbe();
        TestProbe<SchedulerActor.Event> probe = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("noise", prompt(30, 7), 15, Set.of()),
                noise.ref()));
        scheduler.tell(new SchedulerActor.Submit(new GenerationRequest("seeded", prompt, 15, 0, params, List.of(),
                Set.of(), -1, System.nanoTime()), probe.ref()));
        assertArrayEquals(expected, tokens(untilFinished(probe, scheduler)));
        untilFinished(noise, scheduler);
    }

    @Test
    void stopTokensAreNotChosenBeforeMinNewTokens() {
        int[] prompt = prompt(5, 8);
        int greedyFirst = Generator.generate(model, prompt, 1, SamplingParams.greedy(), Set.of(), t -> {
        }).tokens()[0];
        ActorRef<SchedulerActor.Command> scheduler = scheduler(SchedulerConfig.defaults(), new LlamaRunner(model));
        TestProbe<SchedulerActor.Event> probe = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.Submit(new GenerationRequest("min", prompt, 3, 1, SamplingParams.greedy(),
                List.of(), Set.of(greedyFirst), -1, System.nanoTime()), probe.ref()));
        int[] tokens = tokens(untilFinished(probe, scheduler));
        assertTrue(tokens.length >= 1 && tokens[0] != greedyFirst,
                "the stop token " + greedyFirst + " was banned for the first token: " + java.util.Arrays.toString(tokens));
    }

    @Test
    void queueBeyondItsBoundIsRejectedWhileAdmittedRequestsComplete() {
        ActorRef<SchedulerActor.Command> scheduler = scheduler(
                SchedulerConfig.defaults().withMaxRunning(1).withMaxQueue(1), new LlamaRunner(model));
        TestProbe<SchedulerActor.Event> a = testKit.createTestProbe();
        TestProbe<SchedulerActor.Event> b = testKit.createTestProbe();
        TestProbe<SchedulerActor.Event> c = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("a", prompt(5, 1), 30, Set.of()), a.ref()));
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("b", prompt(5, 2), 3, Set.of()), b.ref()));
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("c", prompt(5, 3), 3, Set.of()), c.ref()));
        SchedulerActor.Rejected r = c.expectMessageClass(SchedulerActor.Rejected.class, WAIT);
        assertEquals(SchedulerActor.Rejection.QUEUE_FULL, r.reason());
        assertTrue(r.message().contains("queue is full"), r.message());
        assertEquals(30, tokens(untilFinished(a, scheduler)).length);
        assertEquals(3, tokens(untilFinished(b, scheduler)).length);
    }

    @Test
    void withNoQueueRequestsAreServedWhileThereIsRoomAndRefusedBeyond() {
        ActorRef<SchedulerActor.Command> scheduler = scheduler(
                SchedulerConfig.defaults().withMaxRunning(2).withMaxQueue(0).withStreamWindow(1), new LlamaRunner(model));
        List<TestProbe<SchedulerActor.Event>> probes = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            TestProbe<SchedulerActor.Event> p = testKit.createTestProbe();
            probes.add(p);
            scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("q" + i, prompt(4, i), 6, Set.of()),
                    p.ref()));
        }
        assertEquals(SchedulerActor.Rejection.QUEUE_FULL,
                probes.get(2).expectMessageClass(SchedulerActor.Rejected.class, WAIT).reason());
        assertEquals(6, tokens(untilFinished(probes.get(0), scheduler)).length);
        assertEquals(6, tokens(untilFinished(probes.get(1), scheduler)).length);
    }

    @Test
    void admissionKeepsWithinTheKvBudget() {
        LlamaRunner runner = new LlamaRunner(model);
        // Room for one sequence of 40 tokens at full length, not two.
        ActorRef<SchedulerActor.Command> scheduler = scheduler(SchedulerConfig.defaults().withStreamWindow(1)
                .withMaxKvBytes(40 * runner.kvBytesPerToken()), runner);
        TestProbe<SchedulerActor.Event> a = testKit.createTestProbe();
        TestProbe<SchedulerActor.Event> b = testKit.createTestProbe();
        TestProbe<SchedulerActor.Event> huge = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("a", prompt(5, 1), 30, Set.of()), a.ref()));
        a.expectMessageClass(SchedulerActor.Tokens.class, WAIT); // a is admitted, then parked without credit
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("b", prompt(5, 2), 30, Set.of()), b.ref()));
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("huge", prompt(20, 3), 30, Set.of()),
                huge.ref()));
        SchedulerActor.Rejected r = huge.expectMessageClass(SchedulerActor.Rejected.class, WAIT);
        assertEquals(SchedulerActor.Rejection.TOO_LARGE, r.reason());
        SchedulerActor.Stats stats = stats(scheduler);
        assertEquals(1, stats.running());
        assertEquals(1, stats.queued(), "b waits for a's cache budget");
        scheduler.tell(new SchedulerActor.Credit("a", 1));
        assertEquals(29, tokens(untilFinished(a, scheduler)).length);
        assertEquals(30, tokens(untilFinished(b, scheduler)).length, "b is admitted once a has ended");
    }

    @Test
    void abortEndsTheSequenceAndFreesItsCache() {
        ActorRef<SchedulerActor.Command> scheduler = scheduler(SchedulerConfig.defaults().withStreamWindow(2),
                new LlamaRunner(model));
        TestProbe<SchedulerActor.Event> probe = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("x", prompt(9, 1), 50, Set.of()),
                probe.ref()));
        probe.expectMessageClass(SchedulerActor.Tokens.class, WAIT);
        probe.expectMessageClass(SchedulerActor.Tokens.class, WAIT);
        assertTrue(stats(scheduler).kvBytes() > 0, "a parked sequence keeps its cache");
        TestProbe<SchedulerActor.AbortReply> reply = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.Abort("x", reply.ref()));
        assertTrue(reply.receiveMessage(WAIT).found());
        SchedulerActor.Finished f = probe.expectMessageClass(SchedulerActor.Finished.class, WAIT);
        assertEquals(FinishReason.ABORTED, f.reason());
        reply.awaitAssert(WAIT, () -> {
            assertEquals(0, stats(scheduler).kvBytes());
            return null;
        });
        scheduler.tell(new SchedulerActor.Abort("x", reply.ref()));
        assertTrue(!reply.receiveMessage(WAIT).found(), "an ended request is not found again");
    }

    @Test
    void aSequenceWithoutCreditIsParkedUntilItsClientCatchesUp() {
        ActorRef<SchedulerActor.Command> scheduler = scheduler(SchedulerConfig.defaults().withStreamWindow(2),
                new LlamaRunner(model));
        TestProbe<SchedulerActor.Event> slow = testKit.createTestProbe();
        TestProbe<SchedulerActor.Event> fast = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("slow", prompt(4, 1), 8, Set.of()),
                slow.ref()));
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("fast", prompt(4, 2), 8, Set.of()),
                fast.ref()));
        slow.expectMessageClass(SchedulerActor.Tokens.class, WAIT);
        slow.expectMessageClass(SchedulerActor.Tokens.class, WAIT);
        assertEquals(8, tokens(untilFinished(fast, scheduler)).length,
                "the fast stream finishes while the slow one is parked");
        slow.expectNoMessage(Duration.ofMillis(200));
        scheduler.tell(new SchedulerActor.Credit("slow", 100));
        assertEquals(6, tokens(untilFinished(slow, scheduler)).length, "the slow stream resumes where it stopped");
    }

    @Test
    void aWholeStepFailureEndsItsSequencesAndTheSchedulerGoesOn() {
        LlamaRunner real = new LlamaRunner(model);
        java.util.concurrent.atomic.AtomicBoolean broken = new java.util.concurrent.atomic.AtomicBoolean(true);
        // The first step throws as a whole, as a lost device would; later steps work.
        ActorRef<SchedulerActor.Command> scheduler = scheduler(SchedulerConfig.defaults(), new ModelRunner() {
            @Override
            public dev.cmoe.model.llama.KvCache newCache(int maxLength) {
                return real.newCache(maxLength);
            }

            @Override
            public long kvBytesPerToken() {
                return real.kvBytesPerToken();
            }

            @Override
            public int contextLength() {
                return real.contextLength();
            }

            @Override
            public StepOutput run(ScheduledBatch batch) {
                if (broken.getAndSet(false)) {
                    throw new IllegalStateException("engine lost");
                }
                return real.run(batch);
            }
        });
        TestProbe<SchedulerActor.Event> first = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("first", prompt(4, 1), 5, Set.of()),
                first.ref()));
        SchedulerActor.Failed failed = first.expectMessageClass(SchedulerActor.Failed.class, WAIT);
        assertEquals("model step failed: engine lost", failed.message());
        assertEquals(FinishReason.ERROR, first.expectMessageClass(SchedulerActor.Finished.class, WAIT).reason());
        TestProbe<SchedulerActor.Event> second = testKit.createTestProbe();
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("second", prompt(4, 1), 5, Set.of()),
                second.ref()));
        assertEquals(5, tokens(untilFinished(second, scheduler)).length);
        assertEquals(0, stats(scheduler).kvBytes());
    }

    @Test
    void aFailingSequenceEndsAloneWithFailed() {
        ModelRunner failsBoom = new FailingRunner(new LlamaRunner(model), "boom");
        ActorRef<SchedulerActor.Command> scheduler = scheduler(SchedulerConfig.defaults(), failsBoom);
        TestProbe<SchedulerActor.Event> good = testKit.createTestProbe();
        TestProbe<SchedulerActor.Event> bad = testKit.createTestProbe();
        int[] prompt = prompt(6, 5);
        int[] expected = Generator.generate(model, prompt, 7, SamplingParams.greedy(), Set.of(), t -> {
        }).tokens();
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("good", prompt, 7, Set.of()), good.ref()));
        scheduler.tell(new SchedulerActor.Submit(GenerationRequest.greedy("boom", prompt(3, 1), 7, Set.of()),
                bad.ref()));
        SchedulerActor.Failed failed = bad.expectMessageClass(SchedulerActor.Failed.class, WAIT);
        assertTrue(failed.message().contains("injected"), failed.message());
        assertEquals(FinishReason.ERROR, bad.expectMessageClass(SchedulerActor.Finished.class, WAIT).reason());
        assertArrayEquals(expected, tokens(untilFinished(good, scheduler)));
        assertEquals(0, stats(scheduler).kvBytes());
    }
}
