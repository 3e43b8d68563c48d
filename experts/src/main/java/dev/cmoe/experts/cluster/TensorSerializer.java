package dev.cmoe.experts.cluster;

import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.ExpertWorker;
import java.io.NotSerializableException;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.serialization.ByteBufferSerializer;
import org.apache.pekko.serialization.SerializerWithStringManifest;

/**
 * The wire format of every {@link ClusterMessage}: compact little-endian binary, float32 tensors
 * as raw bytes written in bulk. Artery hands it its frame buffer directly
 * ({@link ByteBufferSerializer}), so a step's rows are copied once, from the Java array into the
 * frame. Layout per manifest (strings are an int byte length + UTF-8; refs are strings from
 * {@link ActorRefResolver}; float arrays an int count + the values):
 *
 * <pre>
 * C Compute     stepId:long count:int rows:floats replyTo:ref
 * D Computed    stepId:long layer:int expert:int outputs:floats
 * F Failed      stepId:long layer:int expert:int reason:string
 * I InjectFault reason:string
 * Q Describe    challenge:string replyTo:ref
 * P Description deviceId:string layers,routed,hidden,expertSize:int dtype:byte memoryBytes:long maxFrameBytes:int
 *               hosted:ids proof:string
 * L Load        opId:long experts:ids replyTo:ref
 * R LoadResult  opId:long deviceId:string n:int n×(layer:int expert:int ref) failure:string
 * U Unload      opId:long experts:ids replyTo:ref
 * V Unloaded    opId:long deviceId:string hosted:ids
 * </pre>
 *
 * ids are an int count + (layer:int, expert:int) pairs. Tensors stay float32 rather than bf16:
 * the experts' outputs must be bit-identical to the single-node forward, so that greedy tokens
 * do not depend on where an expert runs.
 */
public final class TensorSerializer extends SerializerWithStringManifest implements ByteBufferSerializer {
    /** Pekko reserves 0–40; this one is the project's. */
    public static final int IDENTIFIER = 7_301;
    /** Bytes a {@link ExpertActor.Compute} or {@link ExpertActor.Computed} adds to its float payload, at most. */
    public static final int TENSOR_MESSAGE_OVERHEAD = 4 * 1024;

    private final ExtendedActorSystem system;
    private volatile ActorRefResolver resolver;

    public TensorSerializer(ExtendedActorSystem system) {
        this.system = system;
    }

    @Override
    public int identifier() {
        return IDENTIFIER;
    }

    @Override
    public String manifest(Object o) {
        return switch (o) {
            case ExpertActor.Compute m -> "C";
            case ExpertActor.Computed m -> "D";
            case ExpertActor.Failed m -> "F";
            case ExpertActor.InjectFault m -> "I";
            case ExpertWorker.Describe m -> "Q";
            case ExpertWorker.Description m -> "P";
            case ExpertWorker.Load m -> "L";
            case ExpertWorker.LoadResult m -> "R";
            case ExpertWorker.Unload m -> "U";
            case ExpertWorker.Unloaded m -> "V";
            default -> throw new IllegalArgumentException("no cluster wire format for " + o.getClass().getName());
        };
    }

    @Override
    public byte[] toBinary(Object o) {
        // Rarely used with Artery (which takes the ByteBuffer path); sized by a dry run.
        ByteBuffer buf = ByteBuffer.allocate(size(o));
        toBinary(o, buf);
        return buf.array();
    }

    /** Also refuses bytes left over after the message: the array holds exactly one message. */
    @Override
    public Object fromBinary(byte[] bytes, String manifest) throws NotSerializableException {
        ByteBuffer buf = ByteBuffer.wrap(bytes);
        Object o = fromBinary(buf, manifest);
        if (buf.hasRemaining()) {
            throw new NotSerializableException("cluster message \"" + manifest + "\" of " + bytes.length
                    + " bytes has " + buf.remaining() + " bytes after its end");
        }
        return o;
    }

    @Override
    public void toBinary(Object o, ByteBuffer buf) {
        // A little-endian view of the rest of Artery's buffer; its position moves on by what was written.
        ByteBuffer out = buf.slice().order(ByteOrder.LITTLE_ENDIAN);
        switch (o) {
            case ExpertActor.Compute m -> {
                out.putLong(m.stepId()).putInt(m.count());
                floats(out, m.rows());
                string(out, ref(m.replyTo()));
            }
            case ExpertActor.Computed m -> {
                out.putLong(m.stepId()).putInt(m.expert().layer()).putInt(m.expert().expert());
                floats(out, m.outputs());
            }
            case ExpertActor.Failed m -> {
                out.putLong(m.stepId()).putInt(m.expert().layer()).putInt(m.expert().expert());
                string(out, m.reason());
            }
            case ExpertActor.InjectFault m -> string(out, m.reason());
            case ExpertWorker.Describe m -> {
                string(out, m.challenge());
                string(out, ref(m.replyTo()));
            }
            case ExpertWorker.Description m -> {
                string(out, m.deviceId());
                ExpertShape s = m.shape();
                out.putInt(s.layers()).putInt(s.routed()).putInt(s.hidden()).putInt(s.expertSize())
                        .put((byte) s.dtype().ordinal());
                out.putLong(m.memoryBytes()).putInt(m.maxFrameBytes());
                ids(out, m.hosted());
                string(out, m.proof());
            }
            case ExpertWorker.Load m -> {
                out.putLong(m.opId());
                ids(out, m.experts());
                string(out, ref(m.replyTo()));
            }
            case ExpertWorker.LoadResult m -> {
                out.putLong(m.opId());
                string(out, m.deviceId());
                out.putInt(m.ready().size());
                for (Map.Entry<ExpertId, ActorRef<ExpertActor.Command>> e : m.ready().entrySet()) {
                    out.putInt(e.getKey().layer()).putInt(e.getKey().expert());
                    string(out, ref(e.getValue()));
                }
                string(out, m.failure());
            }
            case ExpertWorker.Unload m -> {
                out.putLong(m.opId());
                ids(out, m.experts());
                string(out, ref(m.replyTo()));
            }
            case ExpertWorker.Unloaded m -> {
                out.putLong(m.opId());
                string(out, m.deviceId());
                ids(out, m.hosted());
            }
            default -> throw new IllegalArgumentException("no cluster wire format for " + o.getClass().getName());
        }
        buf.position(buf.position() + out.position());
    }

    /**
     * Decodes one message. Bytes that do not form one (truncated, counts past the end, values a
     * message refuses) are a {@link NotSerializableException} naming the manifest and the problem,
     * never another exception out of Artery's inbound stream; {@code buf} is then left unmoved.
     */
    @Override
    public Object fromBinary(ByteBuffer buf, String manifest) throws NotSerializableException {
        if (manifest == null) {
            throw new NotSerializableException("cluster message without a manifest");
        }
        ByteBuffer in = buf.slice().order(ByteOrder.LITTLE_ENDIAN);
        Object o;
        try {
            o = decode(in, manifest);
        } catch (BufferUnderflowException e) {
            throw new NotSerializableException("cluster message \"" + manifest + "\" is truncated: it ended after "
                    + in.position() + " of " + in.limit() + " bytes, in the middle of a field");
        } catch (RuntimeException e) {
            throw new NotSerializableException("cluster message \"" + manifest + "\" is malformed: " + e.getMessage());
        }
        buf.position(buf.position() + in.position());
        return o;
    }

    private Object decode(ByteBuffer in, String manifest) throws NotSerializableException {
        return switch (manifest) {
            case "C" -> {
                long step = in.getLong();
                int count = in.getInt();
                float[] rows = floats(in);
                if (count < 0 || (count == 0 ? rows.length != 0 : rows.length % count != 0)) {
                    throw new IllegalArgumentException("Compute of step " + step + " claims " + count
                            + " rows but carries " + rows.length + " floats");
                }
                yield new ExpertActor.Compute(step, rows, count, resolve(string(in)));
            }
            case "D" -> new ExpertActor.Computed(in.getLong(), new ExpertId(in.getInt(), in.getInt()), floats(in));
            case "F" -> new ExpertActor.Failed(in.getLong(), new ExpertId(in.getInt(), in.getInt()), string(in));
            case "I" -> new ExpertActor.InjectFault(string(in));
            case "Q" -> new ExpertWorker.Describe(string(in), resolve(string(in)));
            case "P" -> {
                String device = string(in);
                ExpertShape shape = new ExpertShape(in.getInt(), in.getInt(), in.getInt(), in.getInt(), dtype(in.get()));
                long memory = in.getLong();
                int frame = in.getInt();
                List<ExpertId> hosted = ids(in);
                yield new ExpertWorker.Description(device, shape, memory, frame, hosted, string(in));
            }
            case "L" -> {
                long op = in.getLong();
                List<ExpertId> ids = ids(in);
                yield new ExpertWorker.Load(op, ids, resolve(string(in)));
            }
            case "R" -> {
                long op = in.getLong();
                String device = string(in);
                int n = in.getInt();
                Map<ExpertId, ActorRef<ExpertActor.Command>> ready = new LinkedHashMap<>();
                for (int i = 0; i < n; i++) {
                    ExpertId id = new ExpertId(in.getInt(), in.getInt());
                    ready.put(id, resolve(string(in)));
                }
                yield new ExpertWorker.LoadResult(op, device, ready, string(in));
            }
            case "U" -> {
                long op = in.getLong();
                List<ExpertId> ids = ids(in);
                yield new ExpertWorker.Unload(op, ids, resolve(string(in)));
            }
            case "V" -> {
                long op = in.getLong();
                String device = string(in);
                yield new ExpertWorker.Unloaded(op, device, ids(in));
            }
            default -> throw new NotSerializableException("unknown cluster message manifest \"" + manifest + "\"");
        };
    }

    /** The encoded size of {@code o}, for the byte-array path. */
    private int size(Object o) {
        return switch (o) {
            case ExpertActor.Compute m -> 12 + 4 + 4 * m.rows().length + stringSize(ref(m.replyTo()));
            case ExpertActor.Computed m -> 16 + 4 + 4 * m.outputs().length;
            case ExpertActor.Failed m -> 16 + stringSize(m.reason());
            case ExpertActor.InjectFault m -> stringSize(m.reason());
            case ExpertWorker.Describe m -> stringSize(m.challenge()) + stringSize(ref(m.replyTo()));
            case ExpertWorker.Description m -> stringSize(m.deviceId()) + 29 + 4 + 8 * m.hosted().size()
                    + stringSize(m.proof());
            case ExpertWorker.Load m -> 8 + 4 + 8 * m.experts().size() + stringSize(ref(m.replyTo()));
            case ExpertWorker.LoadResult m -> {
                int n = 8 + stringSize(m.deviceId()) + 4 + stringSize(m.failure());
                for (ActorRef<ExpertActor.Command> r : m.ready().values()) {
                    n += 8 + stringSize(ref(r));
                }
                yield n;
            }
            case ExpertWorker.Unload m -> 8 + 4 + 8 * m.experts().size() + stringSize(ref(m.replyTo()));
            case ExpertWorker.Unloaded m -> 8 + stringSize(m.deviceId()) + 4 + 8 * m.hosted().size();
            default -> throw new IllegalArgumentException("no cluster wire format for " + o.getClass().getName());
        };
    }

    private static void floats(ByteBuffer out, float[] values) {
        out.putInt(values.length);
        out.asFloatBuffer().put(values); // one bulk copy; the view shares out's little-endian order
        out.position(out.position() + values.length * Float.BYTES);
    }

    private static float[] floats(ByteBuffer in) {
        int n = in.getInt();
        if (n < 0 || (long) n * Float.BYTES > in.remaining()) {
            throw new IllegalArgumentException("cluster message claims " + n + " floats but holds " + in.remaining()
                    + " bytes");
        }
        float[] values = new float[n];
        in.asFloatBuffer().get(values);
        in.position(in.position() + n * Float.BYTES);
        return values;
    }

    private static void ids(ByteBuffer out, List<ExpertId> ids) {
        out.putInt(ids.size());
        for (ExpertId id : ids) {
            out.putInt(id.layer()).putInt(id.expert());
        }
    }

    private static List<ExpertId> ids(ByteBuffer in) {
        int n = in.getInt();
        if (n < 0 || (long) n * 8 > in.remaining()) {
            throw new IllegalArgumentException("cluster message claims " + n + " expert ids but holds "
                    + in.remaining() + " bytes");
        }
        List<ExpertId> ids = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            ids.add(new ExpertId(in.getInt(), in.getInt()));
        }
        return ids;
    }

    private static void string(ByteBuffer out, String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        out.putInt(b.length).put(b);
    }

    private static String string(ByteBuffer in) {
        int n = in.getInt();
        if (n < 0 || n > in.remaining()) {
            throw new IllegalArgumentException("cluster message claims a string of " + n + " bytes but holds "
                    + in.remaining());
        }
        byte[] b = new byte[n];
        in.get(b);
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(b)).toString();
        } catch (CharacterCodingException e) {
            throw new IllegalArgumentException("cluster message holds a string of " + n + " bytes that is not UTF-8");
        }
    }

    private static int stringSize(String s) {
        return 4 + s.getBytes(StandardCharsets.UTF_8).length;
    }

    private String ref(ActorRef<?> ref) {
        return resolver().toSerializationFormat(ref);
    }

    private <T> ActorRef<T> resolve(String path) {
        return resolver().resolveActorRef(path);
    }

    private ActorRefResolver resolver() {
        // Looked up on first use: the serializer is created while the system is still starting.
        ActorRefResolver r = resolver;
        if (r == null) {
            r = ActorRefResolver.get(Adapter.toTyped(system));
            resolver = r;
        }
        return r;
    }

    private static dev.cmoe.model.safetensors.DType dtype(byte ordinal) {
        dev.cmoe.model.safetensors.DType[] all = dev.cmoe.model.safetensors.DType.values();
        if (ordinal < 0 || ordinal >= all.length) {
            throw new IllegalArgumentException("unknown dtype " + ordinal + " in an expert shape");
        }
        return all[ordinal];
    }
}
