package dev.cmoe.experts;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.experts.cluster.WireTensor;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeWeightNames;
import java.nio.FloatBuffer;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** A device worker loads only what it is told, within its budget, and unloads on request. */
@Timeout(60)
class ExpertWorkerLoadTest {
    private static final ExpertShape SHAPE = new ExpertShape(2, 3, 8, 4);
    private static final ActorTestKit KIT = ActorTestKit.create();

    /** Random weights for every expert of SHAPE; remembers which tensors were read. */
    private static final class Source implements TensorSource {
        final Set<String> read = ConcurrentHashMap.newKeySet();

        @Override
        public FloatBuffer read(String name, long... shape) {
            read.add(name);
            Random r = new Random(name.hashCode());
            float[] v = new float[(int) (shape[0] * shape[1])];
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) r.nextGaussian();
            }
            return FloatBuffer.wrap(v);
        }
    }

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    @Test
    void loadsOnlyThePlacedExpertsAndServesThem() {
        Source source = new Source();
        ActorRef<ExpertWorker.Command> worker = KIT.spawn(ExpertWorker.create("w1/cpu", Device.cpu(), SHAPE, source,
                0, 0, List.of(), ClusterSecret.OPEN));
        TestProbe<ExpertWorker.LoadResult> loads = KIT.createTestProbe();
        worker.tell(new ExpertWorker.Load(7, List.of(new ExpertId(1, 2), new ExpertId(0, 1)), loads.getRef()));
        ExpertWorker.LoadResult r = loads.receiveMessage(Duration.ofSeconds(20));
        assertTrue(r.ok(), r.failure());
        assertEquals(7, r.opId());
        assertEquals("w1/cpu", r.deviceId());
        assertEquals(Set.of(new ExpertId(1, 2), new ExpertId(0, 1)), r.ready().keySet());
        assertEquals(Set.of(MoeWeightNames.expert(1, 2, MoeWeightNames.GATE),
                MoeWeightNames.expert(1, 2, MoeWeightNames.UP), MoeWeightNames.expert(1, 2, MoeWeightNames.DOWN),
                MoeWeightNames.expert(0, 1, MoeWeightNames.GATE), MoeWeightNames.expert(0, 1, MoeWeightNames.UP),
                MoeWeightNames.expert(0, 1, MoeWeightNames.DOWN)), source.read, "exactly the placed experts' tensors");

        TestProbe<ExpertWorker.Description> describe = KIT.createTestProbe();
        worker.tell(new ExpertWorker.Describe(ClusterSecret.challenge(), describe.getRef()));
        ExpertWorker.Description d = describe.receiveMessage(Duration.ofSeconds(10));
        TestProbe<DeviceCompute.BatchReply> replies = KIT.createTestProbe();
        d.compute().tell(new DeviceCompute.ComputeBatch(3, 1, new int[] {2}, new int[] {2},
                WireTensor.writer(DType.F32, 2, 8).put(new float[2 * 8], 0, 2 * 8).done(), replies.getRef()));
        DeviceCompute.BatchComputed c = assertInstanceOf(DeviceCompute.BatchComputed.class,
                replies.receiveMessage(Duration.ofSeconds(10)));
        float[] out = new float[2 * 8];
        c.outputs().read(0, 2, out, 0);
        assertArrayEquals(new float[2 * 8], out, "SwiGLU of zero rows is zero");
        assertEquals(SHAPE, d.shape());
        assertEquals(Set.of(new ExpertId(1, 2), new ExpertId(0, 1)), Set.copyOf(d.hosted()));

        TestProbe<ExpertWorker.Unloaded> unloads = KIT.createTestProbe();
        worker.tell(new ExpertWorker.Unload(8, List.of(new ExpertId(1, 2)), unloads.getRef()));
        assertEquals(List.of(new ExpertId(0, 1)), unloads.receiveMessage(Duration.ofSeconds(10)).hosted());
        // loading it again right away gets a fresh actor (the old name may still be stopping)
        worker.tell(new ExpertWorker.Load(9, List.of(new ExpertId(1, 2)), loads.getRef()));
        ExpertWorker.LoadResult again = loads.receiveMessage(Duration.ofSeconds(20));
        assertTrue(again.ok(), again.failure());
    }

    @Test
    void theLoadTimeoutBoundsAStallNotTheSizeOfTheLoad() {
        // 16 experts, each 3 reads of 0.2 s, on the dispatcher's 4 threads: about 2.4 s in all,
        // longer than the 1.5 s timeout, with an expert ready every 0.6 s or so
        ExpertShape shape = new ExpertShape(4, 4, 8, 4);
        ActorTestKit kit = ActorTestKit.create(com.typesafe.config.ConfigFactory.parseString(
                ExpertWorker.LOAD_TIMEOUT + " = 1500ms").withFallback(com.typesafe.config.ConfigFactory.load()));
        try {
            Set<String> stalled = ConcurrentHashMap.newKeySet();
            Source random = new Source();
            TensorSource slow = (name, dims) -> {
                long nap = stalled.contains(name) ? 4_000 : 200;
                try {
                    Thread.sleep(nap);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                return random.read(name, dims);
            };
            ActorRef<ExpertWorker.Command> worker = kit.spawn(ExpertWorker.create("w3/cpu", Device.cpu(), shape, slow,
                    0, 0, List.of(), ClusterSecret.OPEN));
            List<ExpertId> all = new java.util.ArrayList<>();
            for (int l = 0; l < 4; l++) {
                for (int j = 0; j < 4; j++) {
                    all.add(new ExpertId(l, j));
                }
            }
            TestProbe<ExpertWorker.LoadResult> loads = kit.createTestProbe();
            long start = System.nanoTime();
            worker.tell(new ExpertWorker.Load(1, all, loads.getRef()));
            ExpertWorker.LoadResult r = loads.receiveMessage(Duration.ofSeconds(30));
            double seconds = (System.nanoTime() - start) / 1e9;
            assertTrue(r.ok(), r.failure());
            assertEquals(Set.copyOf(all), r.ready().keySet());
            assertTrue(seconds > 1.5, "the load should outlast the timeout to show anything: " + seconds + " s");

            // an expert whose weights never arrive fails its load after the timeout, naming it
            worker.tell(new ExpertWorker.Unload(2, List.of(new ExpertId(3, 3)), kit.<ExpertWorker.Unloaded>createTestProbe()
                    .getRef()));
            stalled.add(MoeWeightNames.expert(3, 3, MoeWeightNames.GATE));
            worker.tell(new ExpertWorker.Load(3, List.of(new ExpertId(3, 3)), loads.getRef()));
            ExpertWorker.LoadResult stuck = loads.receiveMessage(Duration.ofSeconds(20));
            assertTrue(stuck.failure().contains("(3, 3)") && stuck.failure().contains("no expert of the load became"
                    + " ready for"), stuck.failure());
        } finally {
            kit.shutdownTestKit();
        }
    }

    @Test
    void refusesWhatExceedsItsMemoryBudgetOrTheModel() {
        ActorRef<ExpertWorker.Command> worker = KIT.spawn(ExpertWorker.create("w2/cpu", Device.cpu(), SHAPE,
                new Source(), 2 * SHAPE.expertBytes(), 0, List.of(), ClusterSecret.OPEN));
        TestProbe<ExpertWorker.LoadResult> loads = KIT.createTestProbe();
        worker.tell(new ExpertWorker.Load(1, List.of(new ExpertId(0, 0), new ExpertId(0, 1), new ExpertId(0, 2)),
                loads.getRef()));
        ExpertWorker.LoadResult r = loads.receiveMessage(Duration.ofSeconds(10));
        assertTrue(r.failure().contains("exceeds its memory budget of " + 2 * SHAPE.expertBytes()), r.failure());
        assertTrue(r.ready().isEmpty());
        worker.tell(new ExpertWorker.Load(2, List.of(new ExpertId(5, 0)), loads.getRef()));
        assertTrue(loads.receiveMessage(Duration.ofSeconds(10)).failure().contains("no experts [(5, 0)]"));
        worker.tell(new ExpertWorker.Load(3, List.of(new ExpertId(0, 0), new ExpertId(1, 1)), loads.getRef()));
        assertTrue(loads.receiveMessage(Duration.ofSeconds(20)).ok(), "two experts fit the budget");
    }
}
