package dev.cmoe.experts.cluster;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.ExpertWorker;
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
        TestProbe<ExpertActor.Reply> probe = KIT.createTestProbe();
        assertInstanceOf(TensorSerializer.class,
                s.findSerializerFor(new ExpertActor.Compute(1, new float[1], 1, probe.getRef())));
    }

    @Test
    void tensorsRoundTripExactlyThroughBytesAndBuffers() throws Exception {
        TensorSerializer ser = serializer();
        TestProbe<ExpertActor.Reply> probe = KIT.createTestProbe();
        Random r = new Random(3);
        float[] rows = new float[5 * 7];
        for (int i = 0; i < rows.length; i++) {
            rows[i] = (float) r.nextGaussian();
        }
        rows[3] = Float.NaN;
        rows[4] = -0.0f;
        rows[5] = Float.MIN_VALUE;
        ExpertActor.Compute c = new ExpertActor.Compute(42, rows, 5, probe.getRef());
        byte[] bytes = ser.toBinary(c);
        assertTrue(bytes.length < rows.length * 4 + 200, "compact: " + bytes.length + " bytes");
        ExpertActor.Compute back = (ExpertActor.Compute) ser.fromBinary(bytes, ser.manifest(c));
        assertEquals(42, back.stepId());
        assertEquals(5, back.count());
        assertEquals(probe.getRef(), back.replyTo());
        for (int i = 0; i < rows.length; i++) {
            assertEquals(Float.floatToRawIntBits(rows[i]), Float.floatToRawIntBits(back.rows()[i]), "value " + i);
        }
        // the ByteBuffer path, into a big-endian buffer at an offset, as Artery's frame might be
        ByteBuffer buf = ByteBuffer.allocate(4096);
        buf.position(13);
        ExpertActor.Computed out = new ExpertActor.Computed(9, new ExpertId(1, 6), rows);
        ser.toBinary(out, buf);
        int end = buf.position();
        buf.flip().position(13);
        ExpertActor.Computed got = (ExpertActor.Computed) ser.fromBinary(buf, ser.manifest(out));
        assertEquals(end, buf.position(), "reads exactly what was written");
        assertEquals(new ExpertId(1, 6), got.expert());
        assertArrayEquals(rows, got.outputs());
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
        List<Object> messages = List.of(
                new ExpertActor.Failed(3, new ExpertId(2, 1), "bad rows: ü"),
                new ExpertActor.InjectFault("drill"),
                new ExpertWorker.Describe("q2hallenge==", descr.getRef()),
                new ExpertWorker.Description("worker-1/gpu:0", new ExpertShape(6, 14, 256, 64), 1L << 33, 600_000,
                        List.of(new ExpertId(0, 1), new ExpertId(5, 13)), "pr00f+/="),
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
        TestProbe<ExpertActor.Reply> probe = KIT.createTestProbe();
        byte[] good = ser.toBinary(new ExpertActor.Compute(1, new float[] {1, 2, 3, 4}, 2, probe.getRef()));
        for (int cut = 0; cut < good.length; cut += 3) {
            refused(java.util.Arrays.copyOf(good, cut), "C", "cluster message \"C\" is ");
        }
        refused(le(1L, 2, -1), "C", "claims -1 floats");
        refused(le(1L, 2, Integer.MAX_VALUE), "C", "claims 2147483647 floats");
        refused(le(1L, 3, 4, new byte[16], 0), "C", "claims 3 rows but carries 4 floats");
        refused(le(1L, 0, 1, new byte[4], 0), "C", "claims 0 rows but carries 1 floats");
        refused(le(7L, 0, 1, -5), "F", "claims a string of -5 bytes");
        refused(le(7L, 0, 1, 2, new byte[] {(byte) 0xC3, 0x28}), "F", "not UTF-8");
        refused(le(9L, Integer.MAX_VALUE), "L", "claims 2147483647 expert ids");
        // An array holds one message, so leftovers are refused; Artery's buffer may hold more after it.
        java.io.NotSerializableException trailing = org.junit.jupiter.api.Assertions.assertThrows(
                java.io.NotSerializableException.class, () -> ser.fromBinary(le(3L, 0, 1, 0, 5), "F"));
        assertTrue(trailing.getMessage().contains("has 4 bytes after its end"), trailing.getMessage());
        refused(new byte[8], "Z", "unknown cluster message manifest \"Z\"");
        refused(new byte[0], "I", "truncated");
    }
}
