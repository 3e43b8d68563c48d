package dev.cmoe.experts.cluster;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.model.safetensors.DType;
import java.nio.ByteBuffer;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.serialization.Serialization;
import org.apache.pekko.serialization.SerializationExtension;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** Every cluster message survives the binary format, bit for bit, on both of Pekko's paths. */
class TensorSerializerTest {
    private static final ActorTestKit KIT = ActorTestKit.create();

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    private static TensorSerializer serializer() {
        return new TensorSerializer((ExtendedActorSystem) Adapter.toClassic(KIT.system()));
    }

    @Test
    void theConfigurationBindsClusterMessagesToIt() {
        Serialization s = SerializationExtension.get(Adapter.toClassic(KIT.system()));
        TestProbe<DeviceCompute.BatchReply> probe = KIT.createTestProbe();
        assertInstanceOf(TensorSerializer.class, s.findSerializerFor(new DeviceCompute.ComputeBatch(1, 0,
                new int[] {0}, new int[] {1}, WireTensor.writer(DType.F32, 1, 1).put(new float[1], 0, 1).done(),
                probe.getRef())));
    }

    private static float[] awkward(int n, long seed) {
        Random r = new Random(seed);
        float[] rows = new float[n];
        for (int i = 0; i < rows.length; i++) {
            rows[i] = (float) r.nextGaussian();
        }
        rows[3] = Float.NaN;
        rows[4] = -0.0f;
        rows[5] = Float.MIN_VALUE;
        rows[6] = Float.POSITIVE_INFINITY;
        return rows;
    }

    @Test
    void batchesRoundTripExactlyThroughBytesAndBuffersInEachDtype() throws Exception {
        TensorSerializer ser = serializer();
        TestProbe<DeviceCompute.BatchReply> probe = KIT.createTestProbe();
        float[] rows = awkward(5 * 7, 3);
        for (DType dtype : DType.values()) {
            WireTensor t = WireTensor.writer(dtype, 5, 7).put(rows, 0, rows.length).done();
            DeviceCompute.ComputeBatch c = new DeviceCompute.ComputeBatch(42, 3, new int[] {4, 9}, new int[] {2, 3},
                    t, probe.getRef());
            byte[] bytes = ser.toBinary(c);
            assertTrue(bytes.length < rows.length * dtype.byteSize() + 200, dtype + " compact: " + bytes.length
                    + " bytes");
            DeviceCompute.ComputeBatch back = (DeviceCompute.ComputeBatch) ser.fromBinary(bytes, ser.manifest(c));
            assertEquals(42, back.stepId());
            assertEquals(3, back.layer());
            assertArrayEquals(new int[] {4, 9}, back.experts());
            assertArrayEquals(new int[] {2, 3}, back.counts());
            assertEquals(probe.getRef(), back.replyTo());
            assertEquals(dtype, back.rows().dtype());
            assertArrayEquals(t.bytes(), back.rows().bytes(), dtype + " bytes");
            // the ByteBuffer path, into a big-endian buffer at an offset, as Artery's frame might be
            ByteBuffer buf = ByteBuffer.allocate(4096);
            buf.position(13);
            DeviceCompute.BatchComputed out = new DeviceCompute.BatchComputed(9, t, 1234);
            ser.toBinary(out, buf);
            int end = buf.position();
            buf.flip().position(13);
            DeviceCompute.BatchComputed got = (DeviceCompute.BatchComputed) ser.fromBinary(buf, ser.manifest(out));
            assertEquals(end, buf.position(), "reads exactly what was written");
            assertEquals(1234, got.computeNanos());
            assertArrayEquals(t.bytes(), got.outputs().bytes());
        }
    }

    @Test
    void f32OnTheWireIsExactAndBf16AndF16RoundToNearestEven() {
        float[] rows = awkward(64, 5);
        float[] back = new float[rows.length];
        WireTensor.writer(DType.F32, 8, 8).put(rows, 0, rows.length).done().read(0, 8, back, 0);
        for (int i = 0; i < rows.length; i++) {
            assertEquals(Float.floatToRawIntBits(rows[i]), Float.floatToRawIntBits(back[i]), "f32 value " + i);
        }
        WireTensor bf16 = WireTensor.writer(DType.BF16, 8, 8).put(rows, 0, rows.length).done();
        assertEquals(64 * 2, bf16.byteSize(), "bf16 is two bytes a value");
        bf16.read(0, 8, back, 0);
        java.nio.FloatBuffer direct = bf16.toDirectF32().asFloatBuffer();
        for (int i = 0; i < rows.length; i++) {
            float want = Float.intBitsToFloat(dev.cmoe.model.safetensors.SafetensorsWriter.toBf16(rows[i]) << 16);
            assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(back[i]), "bf16 value " + i);
            assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(direct.get(i)), "bf16 direct " + i);
        }
        // 1 + 2^-8 lies halfway between two bf16 values: to even (1.0); 1 + 3·2^-8 rounds up to 1 + 2^-6
        WireTensor tie = WireTensor.writer(DType.BF16, 1, 2).put(new float[] {1f + 0x1p-8f, 1f + 3 * 0x1p-8f}, 0, 2)
                .done();
        float[] t = new float[2];
        tie.read(0, 1, t, 0);
        assertArrayEquals(new float[] {1f, 1f + 0x1p-6f}, t);
        // a value bf16 holds exactly comes back unchanged: expert outputs cross the wire losslessly
        float[] exact = {1.5f, -0.0078125f, 3.0f * 1024, Float.intBitsToFloat(0x3F810000)};
        float[] got = new float[4];
        WireTensor.writer(DType.BF16, 1, 4).put(exact, 0, 4).done().read(0, 1, got, 0);
        assertArrayEquals(exact, got);
        WireTensor f16 = WireTensor.writer(DType.F16, 8, 8).put(rows, 0, rows.length).done();
        f16.read(0, 8, back, 0);
        for (int i = 0; i < rows.length; i++) {
            float want = Float.float16ToFloat(Float.floatToFloat16(rows[i]));
            assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(back[i]), "f16 value " + i);
        }
    }

    @Test
    void controlMessagesRoundTrip() throws Exception {
        TensorSerializer ser = serializer();
        TestProbe<ExpertWorker.LoadResult> loads = KIT.createTestProbe();
        TestProbe<ExpertActor.Command> expert = KIT.createTestProbe();
        Map<ExpertId, ActorRef<ExpertActor.Command>> ready = new LinkedHashMap<>();
        ready.put(new ExpertId(0, 3), expert.getRef());
        TestProbe<ExpertWorker.Description> descr = KIT.createTestProbe();
        TestProbe<ExpertWorker.Unloaded> unl = KIT.createTestProbe();
        TestProbe<DeviceCompute.Command> compute = KIT.createTestProbe();
        List<Object> messages = List.of(
                new DeviceCompute.BatchFailed(3, "bad rows: ü"),
                new ExpertActor.InjectFault("drill"),
                new ExpertWorker.Refused("device w/cpu did not prove the cluster's secret"),
                new ExpertWorker.Describe("q2hallenge==", descr.getRef()),
                new ExpertWorker.Description("worker-1/gpu:0", new ExpertShape(6, 14, 256, 64), 1L << 33, 600_000,
                        List.of(new ExpertId(0, 1), new ExpertId(5, 13)), "pr00f+/=", compute.getRef()),
                new ExpertWorker.Load(11, List.of(new ExpertId(0, 3)), loads.getRef()),
                new ExpertWorker.LoadResult(11, "worker-1/cpu", ready, ""),
                new ExpertWorker.Unload(12, List.of(new ExpertId(0, 3)), unl.getRef()),
                new ExpertWorker.Unloaded(12, "worker-1/cpu", List.of()));
        for (Object m : messages) {
            Object back = ser.fromBinary(ser.toBinary(m), ser.manifest(m));
            assertEquals(m, back, m.getClass().getSimpleName());
        }
    }

    /** Expects {@code bytes} under {@code manifest} refused with a NotSerializableException saying {@code part}. */
    private static void refused(byte[] bytes, String manifest, String part) {
        java.io.NotSerializableException e = org.junit.jupiter.api.Assertions.assertThrows(
                java.io.NotSerializableException.class, () -> serializer().fromBinary(bytes, manifest));
        assertTrue(e.getMessage().contains(part), "expected '" + part + "' in: " + e.getMessage());
        ByteBuffer buf = ByteBuffer.wrap(bytes);
        org.junit.jupiter.api.Assertions.assertThrows(java.io.NotSerializableException.class,
                () -> serializer().fromBinary(buf, manifest));
        assertEquals(0, buf.position(), "a refused buffer is not consumed");
    }

    private static byte[] le(Object... fields) {
        ByteBuffer b = ByteBuffer.allocate(256).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (Object f : fields) {
            switch (f) {
                case Long l -> b.putLong(l);
                case Integer i -> b.putInt(i);
                case byte[] raw -> b.put(raw);
                default -> throw new IllegalArgumentException(String.valueOf(f));
            }
        }
        return java.util.Arrays.copyOf(b.array(), b.position());
    }

    @Test
    void malformedBytesAreRefusedWithNotSerializableNamingTheProblem() throws Exception {
        TensorSerializer ser = serializer();
        TestProbe<DeviceCompute.BatchReply> probe = KIT.createTestProbe();
        byte[] good = ser.toBinary(new DeviceCompute.ComputeBatch(1, 0, new int[] {3}, new int[] {2},
                WireTensor.writer(DType.F32, 2, 2).put(new float[] {1, 2, 3, 4}, 0, 4).done(), probe.getRef()));
        for (int cut = 0; cut < good.length; cut += 3) {
            refused(java.util.Arrays.copyOf(good, cut), "B", "cluster message \"B\" is ");
        }
        refused(le(1L, 0, -1), "B", "claims -1 experts");
        refused(le(1L, 0, Integer.MAX_VALUE), "B", "claims 2147483647 experts");
        refused(le(1L, 0, 1, 0, 3, new byte[] {0}, 4, 1, new byte[16], 0), "B", "counts 3 rows but carries 4");
        refused(le(1L, 0, 1, 0, 1, new byte[] {0}, Integer.MAX_VALUE, 8), "B", "tensor but holds");
        refused(le(1L, 0, 1, 0, 1, new byte[] {9}, 1, 1), "B", "unknown dtype 9");
        refused(le(7L, -5), "X", "claims a string of -5 bytes");
        refused(le(7L, 2, new byte[] {(byte) 0xC3, 0x28}), "X", "not UTF-8");
        refused(le(9L, Integer.MAX_VALUE), "L", "claims 2147483647 expert ids");
        // An array holds one message, so leftovers are refused; Artery's buffer may hold more after it.
        java.io.NotSerializableException trailing = org.junit.jupiter.api.Assertions.assertThrows(
                java.io.NotSerializableException.class, () -> ser.fromBinary(le(3L, 0, 5), "X"));
        assertTrue(trailing.getMessage().contains("has 4 bytes after its end"), trailing.getMessage());
        refused(new byte[8], "Z", "unknown cluster message manifest \"Z\"");
        refused(new byte[0], "I", "truncated");
    }
}
