package dev.cmoe.experts.cluster;

import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.model.safetensors.DType;
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
 * The wire format of every {@link ClusterMessage}: compact little-endian binary, tensors as raw
 * bytes in the model's dtype ({@link WireTensor}) written in bulk. Artery hands it its frame
 * buffer directly ({@link ByteBufferSerializer}), so a step's rows are copied once, from the
 * message into the frame. Layout per manifest (strings are an int byte length + UTF-8; refs are
 * strings from {@link ActorRefResolver}; a tensor is dtype:byte rows:int cols:int and the
 * rows × cols values of that dtype):
 *
 * <pre>
 * B ComputeBatch  stepId:long layer:int n:int n×(expert:int count:int) rows:tensor replyTo:ref
 * O BatchComputed stepId:long computeNanos:long outputs:tensor
 * X BatchFailed   stepId:long reason:string
 * I InjectFault reason:string
 * F Refused reason:string
 * Q Describe    challenge:string replyTo:ref
 * P Description deviceId:string layers,routed,hidden,expertSize:int dtype:byte memoryBytes:long maxFrameBytes:int
 *               hosted:ids proof:string compute:ref
 * L Load        opId:long experts:ids replyTo:ref
 * R LoadResult  opId:long deviceId:string n:int n×(layer:int expert:int ref) failure:string
 * U Unload      opId:long experts:ids replyTo:ref
 * V Unloaded    opId:long deviceId:string hosted:ids
 * </pre>
 *
 * ids are an int count + (layer:int, expert:int) pairs. A bf16 model's tensors travel as bf16:
 * its experts narrow their input to bf16 first and produce bf16 values, so the outputs stay
 * bit-identical to the single-node forward ({@link WireTensor}) and greedy tokens do not depend
 * on where an expert runs.
 */
public final class TensorSerializer extends SerializerWithStringManifest implements ByteBufferSerializer {
    /** Pekko reserves 0–40; this one is the project's. */
    public static final int IDENTIFIER = 7_301;
    /** Bytes a {@link DeviceCompute.ComputeBatch} or {@link DeviceCompute.BatchComputed} adds to its tensor, beyond 8 per expert. */
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
            case DeviceCompute.ComputeBatch m -> "B";
            case DeviceCompute.BatchComputed m -> "O";
            case DeviceCompute.BatchFailed m -> "X";
            case ExpertActor.InjectFault m -> "I";
            case ExpertWorker.Refused m -> "F";
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
            case DeviceCompute.ComputeBatch m -> {
                out.putLong(m.stepId()).putInt(m.layer()).putInt(m.experts().length);
                for (int i = 0; i < m.experts().length; i++) {
                    out.putInt(m.experts()[i]).putInt(m.counts()[i]);
                }
                tensor(out, m.rows());
                string(out, ref(m.replyTo()));
            }
            case DeviceCompute.BatchComputed m -> {
                out.putLong(m.stepId()).putLong(m.computeNanos());
                tensor(out, m.outputs());
            }
            case DeviceCompute.BatchFailed m -> {
                out.putLong(m.stepId());
                string(out, m.reason());
            }
            case ExpertActor.InjectFault m -> string(out, m.reason());
            case ExpertWorker.Refused m -> string(out, m.reason());
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
                string(out, ref(m.compute()));
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
            case "B" -> {
                long step = in.getLong();
                int layer = in.getInt();
                int n = in.getInt();
                if (n < 0 || (long) n * 8 > in.remaining()) {
                    throw new IllegalArgumentException("ComputeBatch of step " + step + " claims " + n
                            + " experts but holds " + in.remaining() + " bytes");
                }
                int[] experts = new int[n];
                int[] counts = new int[n];
                long rows = 0;
                for (int i = 0; i < n; i++) {
                    experts[i] = in.getInt();
                    counts[i] = in.getInt();
                    rows += counts[i];
                }
                WireTensor t = tensor(in);
                if (rows != t.rows()) {
                    throw new IllegalArgumentException("ComputeBatch of step " + step + " counts " + rows
                            + " rows but carries " + t.rows());
                }
                yield new DeviceCompute.ComputeBatch(step, layer, experts, counts, t, resolve(string(in)));
            }
            case "O" -> {
                long step = in.getLong();
                long nanos = in.getLong();
                yield new DeviceCompute.BatchComputed(step, tensor(in), nanos);
            }
            case "X" -> new DeviceCompute.BatchFailed(in.getLong(), string(in));
            case "I" -> new ExpertActor.InjectFault(string(in));
            case "F" -> new ExpertWorker.Refused(string(in));
            case "Q" -> new ExpertWorker.Describe(string(in), resolve(string(in)));
            case "P" -> {
                String device = string(in);
                ExpertShape shape = new ExpertShape(in.getInt(), in.getInt(), in.getInt(), in.getInt(), dtype(in.get()));
                long memory = in.getLong();
                int frame = in.getInt();
                List<ExpertId> hosted = ids(in);
                String proof = string(in);
                yield new ExpertWorker.Description(device, shape, memory, frame, hosted, proof, resolve(string(in)));
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
            case DeviceCompute.ComputeBatch m -> 16 + 8 * m.experts().length + tensorSize(m.rows())
                    + stringSize(ref(m.replyTo()));
            case DeviceCompute.BatchComputed m -> 16 + tensorSize(m.outputs());
            case DeviceCompute.BatchFailed m -> 8 + stringSize(m.reason());
            case ExpertActor.InjectFault m -> stringSize(m.reason());
            case ExpertWorker.Refused m -> stringSize(m.reason());
            case ExpertWorker.Describe m -> stringSize(m.challenge()) + stringSize(ref(m.replyTo()));
            case ExpertWorker.Description m -> stringSize(m.deviceId()) + 29 + 4 + 8 * m.hosted().size()
                    + stringSize(m.proof()) + stringSize(ref(m.compute()));
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

    private static void tensor(ByteBuffer out, WireTensor t) {
        out.put((byte) t.dtype().ordinal()).putInt(t.rows()).putInt(t.cols());
        out.put(t.bytes()); // one bulk copy, already little-endian
    }

    private static WireTensor tensor(ByteBuffer in) {
        DType dtype = dtype(in.get());
        int rows = in.getInt();
        int cols = in.getInt();
        long n = (long) rows * cols * dtype.byteSize();
        if (rows < 0 || cols <= 0 || n > in.remaining()) {
            throw new IllegalArgumentException("cluster message claims a (" + rows + ", " + cols + ") "
                    + dtype.shortName() + " tensor but holds " + in.remaining() + " bytes");
        }
        byte[] bytes = new byte[(int) n];
        in.get(bytes);
        return new WireTensor(dtype, rows, cols, bytes);
    }

    private static int tensorSize(WireTensor t) {
        return 9 + t.byteSize();
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

    private static DType dtype(byte ordinal) {
        DType[] all = DType.values();
        if (ordinal < 0 || ordinal >= all.length) {
            throw new IllegalArgumentException("unknown dtype " + ordinal);
        }
        return all[ordinal];
    }
}
