package dev.cmoe.experts;

import org.awaitility.Awaitility;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.cluster.WireTensor;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeWeightNames;
import java.nio.FloatBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A device's compute runs every expert of a batch in one message, matches the double-precision
 * twin, keeps a bf16 model's outputs bit-identical through bf16 on the wire, reports bad input,
 * and computes with the reloaded kernel after an expert's fault.
 */
@Timeout(60)
class DeviceComputeTest {
    private static final int D = 12;  // hidden, not a power of two
    private static final int M = 5;   // expert size
    private static final int EXPERTS = 3;
    private static final ActorTestKit KIT = ActorTestKit.create();

    /** Seeded random weights for layer 1's experts, counting every tensor read. */
    private static final class Weights implements TensorSource {
        final Map<String, float[]> tensors = new HashMap<>();
        final AtomicInteger reads = new AtomicInteger();

        Weights() {
            Random r = new Random(11);
            for (int j = 0; j < EXPERTS; j++) {
                tensors.put(MoeWeightNames.expert(1, j, MoeWeightNames.GATE), random(r, M * D));
                tensors.put(MoeWeightNames.expert(1, j, MoeWeightNames.UP), random(r, M * D));
                tensors.put(MoeWeightNames.expert(1, j, MoeWeightNames.DOWN), random(r, D * M));
            }
        }

        volatile java.util.concurrent.CountDownLatch gate; // when set, reads wait for it (bounded)

        @Override
        public FloatBuffer read(String name, long... shape) {
            java.util.concurrent.CountDownLatch g = gate;
            if (g != null) {
                try {
                    g.await(10, java.util.concurrent.TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            reads.incrementAndGet();
            return FloatBuffer.wrap(tensors.get(name));
        }

        /** The slow twin: SiLU(x·gateᵀ) ⊙ (x·upᵀ) · downᵀ in double precision, row by row. */
        float[] reference(int j, float[] x, int n) {
            float[] g = tensors.get(MoeWeightNames.expert(1, j, MoeWeightNames.GATE));
            float[] u = tensors.get(MoeWeightNames.expert(1, j, MoeWeightNames.UP));
            float[] w = tensors.get(MoeWeightNames.expert(1, j, MoeWeightNames.DOWN));
            float[] out = new float[n * D];
            for (int t = 0; t < n; t++) {
                double[] h = new double[M];
                for (int i = 0; i < M; i++) {
                    double a = 0;
                    double b = 0;
                    for (int k = 0; k < D; k++) {
                        a += g[i * D + k] * (double) x[t * D + k];
                        b += u[i * D + k] * (double) x[t * D + k];
                    }
                    h[i] = a / (1 + Math.exp(-a)) * b;
                }
                for (int o = 0; o < D; o++) {
                    double s = 0;
                    for (int i = 0; i < M; i++) {
                        s += w[o * M + i] * h[i];
                    }
                    out[t * D + o] = (float) s;
                }
            }
            return out;
        }
    }

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    private static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    private static ExpertWorker.Hosted spawn(Weights w, DType dtype) {
        List<ExpertId> ids = new ArrayList<>();
        for (int j = 0; j < EXPERTS; j++) {
            ids.add(new ExpertId(1, j));
        }
        ActorRef<ExpertWorker.Command> worker = KIT.spawn(ExpertWorker.create("cpu-0", Device.cpu(), D, M, dtype, ids,
                w));
        TestProbe<ExpertWorker.Hosted> probe = KIT.createTestProbe();
        worker.tell(new ExpertWorker.GetHosted(probe.getRef()));
        ExpertWorker.Hosted hosted = probe.receiveMessage(Duration.ofSeconds(10));
        assertEquals("cpu-0", hosted.worker());
        assertEquals(ids, List.copyOf(hosted.experts().keySet()));
        awaitServed(hosted.compute(), EXPERTS);
        return hosted;
    }

    private static DeviceCompute.Stats stats(ActorRef<DeviceCompute.Command> compute) {
        TestProbe<DeviceCompute.Stats> probe = KIT.createTestProbe();
        compute.tell(new DeviceCompute.GetStats(probe.getRef()));
        return probe.receiveMessage(Duration.ofSeconds(10));
    }

    private static void awaitServed(ActorRef<DeviceCompute.Command> compute, int experts) {
        Awaitility.await("the device's compute holds every expert's kernel").atMost(Duration.ofSeconds(20))
                .pollInterval(Duration.ofMillis(20)).until(() -> stats(compute).experts() == experts);
    }

    private static void assertClose(float[] want, float[] got) {
        assertEquals(want.length, got.length);
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], 1e-5 * Math.max(1, Math.abs(want[i])), "value " + i);
        }
    }

    private static WireTensor f32(float[] x, int n) {
        return WireTensor.writer(DType.F32, n, D).put(x, 0, n * D).done();
    }

    private static DeviceCompute.BatchReply batch(ActorRef<DeviceCompute.Command> compute, long step, int[] experts,
                                                  int[] counts, WireTensor rows) {
        TestProbe<DeviceCompute.BatchReply> probe = KIT.createTestProbe();
        compute.tell(new DeviceCompute.ComputeBatch(step, 1, experts, counts, rows, probe.getRef()));
        return probe.receiveMessage(Duration.ofSeconds(10));
    }

    /** The outputs of a batch, widened. */
    private static float[] outputs(DeviceCompute.BatchReply reply) {
        DeviceCompute.BatchComputed c = assertInstanceOf(DeviceCompute.BatchComputed.class, reply,
                String.valueOf(reply));
        float[] out = new float[c.outputs().rows() * D];
        c.outputs().read(0, c.outputs().rows(), out, 0);
        return out;
    }

    @Test
    void oneBatchComputesTheSwigluOfEveryExpertsRowsInOneMessage() {
        Weights w = new Weights();
        ExpertWorker.Hosted hosted = spawn(w, DType.F32);
        Random r = new Random(2);
        int[][] shapes = {{1}, {3, 1, 17}, {2, 5}};
        int[][] experts = {{2}, {0, 1, 2}, {2, 0}};
        long before = stats(hosted.compute()).batches();
        for (int s = 0; s < shapes.length; s++) {
            int total = java.util.Arrays.stream(shapes[s]).sum();
            float[] x = random(r, total * D);
            float[] got = outputs(batch(hosted.compute(), 10 + s, experts[s], shapes[s], f32(x, total)));
            int at = 0;
            for (int i = 0; i < shapes[s].length; i++) {
                int n = shapes[s][i];
                float[] rows = java.util.Arrays.copyOfRange(x, at * D, (at + n) * D);
                assertClose(w.reference(experts[s][i], rows, n), java.util.Arrays.copyOfRange(got, at * D,
                        (at + n) * D));
                at += n;
            }
        }
        DeviceCompute.Stats after = stats(hosted.compute());
        assertEquals(shapes.length, after.batches() - before, "one message per batch, whatever its experts");
        assertEquals(1 + 21 + 7, after.rows());
    }

    @Test
    void theOneCallBatchEqualsEachExpertAppliedToItsRowsInEveryDtype() {
        Weights w = new Weights();
        for (DType dtype : DType.values()) {
            WeightKernels kernels = WeightKernels.of(dtype);
            List<SwigluExpert> experts = new ArrayList<>();
            try (NDManager m = NDManager.newBaseManager()) {
                for (int j = 0; j < EXPERTS; j++) {
                    experts.add(SwigluExpert.load(new ExpertId(1, j), D, M, w, Device.cpu(), kernels));
                }
                int[][] counts = {{4}, {1, 1}, {2, 7, 3}, {1, 2, 1}};
                int[][] order = {{1}, {2, 0}, {0, 2, 1}, {2, 1, 0}};
                Random r = new Random(5);
                for (int c = 0; c < counts.length; c++) {
                    int total = java.util.Arrays.stream(counts[c]).sum();
                    ai.djl.ndarray.NDArray x = m.create(random(r, total * D), new Shape(total, D));
                    ai.djl.ndarray.NDArray[] gateUps = new ai.djl.ndarray.NDArray[counts[c].length];
                    ai.djl.ndarray.NDArray[] downs = new ai.djl.ndarray.NDArray[counts[c].length];
                    List<ai.djl.ndarray.NDArray> one = new ArrayList<>();
                    int at = 0;
                    for (int i = 0; i < counts[c].length; i++) {
                        SwigluExpert e = experts.get(order[c][i]);
                        gateUps[i] = e.weights()[0];
                        downs[i] = e.weights()[1];
                        one.add(e.apply(x.get(new ai.djl.ndarray.index.NDIndex("{}:{}", at, at + counts[c][i]))));
                        at += counts[c][i];
                    }
                    float[] want = ai.djl.ndarray.NDArrays.concat(new ai.djl.ndarray.NDList(one), 0).toFloatArray();
                    float[] got = dev.cmoe.model.llama.ExpertsScript.of(dtype).outputs(x, counts[c], gateUps, downs)
                            .toFloatArray();
                    org.junit.jupiter.api.Assertions.assertArrayEquals(want, got, dtype + ", case " + c);
                }
            } finally {
                experts.forEach(SwigluExpert::close);
            }
        }
    }

    @Test
    void aBf16BatchOnTheWireIsBitIdenticalToTheExpertOnFloat32Rows() {
        Weights w = new Weights();
        ExpertWorker.Hosted hosted = spawn(w, DType.BF16);
        float[] x = random(new Random(6), 5 * D);
        float[] got = outputs(batch(hosted.compute(), 1, new int[] {1, 0}, new int[] {3, 2},
                WireTensor.writer(DType.BF16, 5, D).put(x, 0, 5 * D).done()));
        // the single-node path: the same expert fed the float32 rows directly
        try (NDManager m = NDManager.newBaseManager();
             SwigluExpert e1 = SwigluExpert.load(new ExpertId(1, 1), D, M, w, Device.cpu(),
                     WeightKernels.of(DType.BF16));
             SwigluExpert e0 = SwigluExpert.load(new ExpertId(1, 0), D, M, w, Device.cpu(),
                     WeightKernels.of(DType.BF16))) {
            float[] want1 = e1.apply(m.create(java.util.Arrays.copyOfRange(x, 0, 3 * D), new Shape(3, D)))
                    .toFloatArray();
            float[] want0 = e0.apply(m.create(java.util.Arrays.copyOfRange(x, 3 * D, 5 * D), new Shape(2, D)))
                    .toFloatArray();
            for (int i = 0; i < 3 * D; i++) {
                assertEquals(Float.floatToRawIntBits(want1[i]), Float.floatToRawIntBits(got[i]), "expert 1 value " + i);
            }
            for (int i = 0; i < 2 * D; i++) {
                assertEquals(Float.floatToRawIntBits(want0[i]), Float.floatToRawIntBits(got[3 * D + i]),
                        "expert 0 value " + i);
            }
        }
    }

    @Test
    void aBatchThatDoesNotAddUpIsAFailedReplyNamingTheValue() {
        ExpertWorker.Hosted hosted = spawn(new Weights(), DType.F32);
        float[] x = new float[3 * D];
        DeviceCompute.BatchFailed f = assertInstanceOf(DeviceCompute.BatchFailed.class,
                batch(hosted.compute(), 7, new int[] {0, 1}, new int[] {1, 1}, f32(x, 3)));
        assertEquals(7, f.stepId());
        assertTrue(f.reason().contains("sum to 2 but 3 rows"), f.reason());
        DeviceCompute.BatchFailed wide = assertInstanceOf(DeviceCompute.BatchFailed.class,
                batch(hosted.compute(), 8, new int[] {0}, new int[] {1},
                        WireTensor.writer(DType.F32, 1, D + 1).put(new float[D + 1], 0, D + 1).done()));
        assertTrue(wide.reason().contains(String.valueOf(D + 1)), wide.reason());
        DeviceCompute.BatchFailed foreign = assertInstanceOf(DeviceCompute.BatchFailed.class,
                batch(hosted.compute(), 9, new int[] {EXPERTS}, new int[] {1}, f32(new float[D], 1)));
        assertTrue(foreign.reason().contains("(1, " + EXPERTS + ")") || foreign.reason().contains("not served"),
                foreign.reason());
    }

    @Test
    void aFaultRestartsTheExpertWhichReloadsItsWeightsAndItsDeviceAnswersCorrectly() throws Exception {
        Weights w = new Weights();
        ExpertWorker.Hosted hosted = spawn(w, DType.F32);
        ActorRef<ExpertActor.Command> expert = hosted.experts().get(new ExpertId(1, 2));
        float[] x = random(new Random(4), 4 * D);
        int[] two = {2};
        int[] four = {4};
        assertClose(w.reference(2, x, 4), outputs(batch(hosted.compute(), 1, two, four, f32(x, 4))));
        int loaded = w.reads.get();
        assertEquals(3 * EXPERTS, loaded, "each expert read its three tensors once");

        expert.tell(new ExpertActor.InjectFault("test"));
        Awaitility.await("the restarted expert reloads its weights").atMost(Duration.ofSeconds(10))
                .pollInterval(Duration.ofMillis(10)).until(() -> w.reads.get() >= loaded + 3);
        assertEquals(loaded + 3, w.reads.get(), "the restarted expert reloaded gate, up and down, and only it did");
        awaitServed(hosted.compute(), EXPERTS);
        // the device computes with the reloaded kernel (the old one is closed: using it would throw)
        assertClose(w.reference(2, x, 4), outputs(batch(hosted.compute(), 2, two, four, f32(x, 4))));
    }

    @Test
    void aBatchForAnExpertBeingReloadedWaitsForItInsteadOfFailing() throws Exception {
        Weights w = new Weights();
        ExpertWorker.Hosted hosted = spawn(w, DType.F32);
        float[] x = random(new Random(5), 3 * D);
        w.gate = new java.util.concurrent.CountDownLatch(1); // the reload waits until the batch is in
        hosted.experts().get(new ExpertId(1, 1)).tell(new ExpertActor.InjectFault("test"));
        Awaitility.await("the restarting expert's kernel is retired").atMost(Duration.ofSeconds(10))
                .pollInterval(Duration.ofMillis(10)).until(() -> stats(hosted.compute()).experts() == EXPERTS - 1);
        TestProbe<DeviceCompute.BatchReply> probe = KIT.createTestProbe();
        hosted.compute().tell(new DeviceCompute.ComputeBatch(9, 1, new int[] {1}, new int[] {3}, f32(x, 3),
                probe.getRef()));
        probe.expectNoMessage(Duration.ofMillis(300)); // not failed: waiting for the reload
        w.gate.countDown();
        assertClose(w.reference(1, x, 3), outputs(probe.receiveMessage(Duration.ofSeconds(10))));
    }
}
