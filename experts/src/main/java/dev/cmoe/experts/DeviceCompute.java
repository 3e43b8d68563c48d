package dev.cmoe.experts;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.cluster.ClusterMessage;
import dev.cmoe.experts.cluster.WireTensor;
import dev.cmoe.model.llama.ExpertsScript;
import dev.cmoe.model.safetensors.DType;
import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * Where one device computes a step: a router sends it one {@link ComputeBatch} per layer and
 * step with the rows of every expert of that layer it chose on this device, and it runs them all
 * here in one engine call ({@link ExpertsScript}), without a message per expert. Spawn it on
 * {@link ExpertActor#DISPATCHER}: the products block its thread.
 *
 * <p>The {@link ExpertActor}s stay the unit of placement and supervision: each loads its
 * expert's kernel and hands it over ({@link Serve}); from then on this actor alone uses and
 * closes it ({@link Retire} from the expert's restart or stop), so a kernel is never closed
 * while a batch uses it. An engine fault in one expert fails the batch naming it, and that
 * expert is told to restart, which reloads its weights.
 */
public final class DeviceCompute extends AbstractBehavior<DeviceCompute.Command> {
    /** What a device's compute understands. */
    public sealed interface Command permits ComputeBatch, Serve, Retire, GetStats {
    }

    /**
     * The rows of one layer's step for several experts of this device.
     *
     * @param stepId the sender's id, echoed in the reply
     * @param experts the experts (of {@code layer}) in the order their rows come
     * @param counts rows of each expert, ≥ 1 each; they sum to {@code rows.rows()}
     * @param rows (Σ counts, hidden): expert 0's rows, then expert 1's, …
     */
    public record ComputeBatch(long stepId, int layer, int[] experts, int[] counts, WireTensor rows,
                               ActorRef<BatchReply> replyTo) implements Command, ClusterMessage {
    }

    /** The answer to {@link ComputeBatch}. */
    public sealed interface BatchReply permits BatchComputed, BatchFailed {
        long stepId();
    }

    /**
     * The experts' answer to a {@link ComputeBatch}.
     *
     * @param outputs (Σ counts, hidden), the experts' unweighted outputs in the order of their rows
     * @param computeNanos time spent computing on the device (profiling: the rest of a round trip is dispatch)
     */
    public record BatchComputed(long stepId, WireTensor outputs, long computeNanos)
            implements BatchReply, ClusterMessage {
    }

    /** The batch could not be computed; {@code reason} names the expert or value at fault. */
    public record BatchFailed(long stepId, String reason) implements BatchReply, ClusterMessage {
    }

    /** An expert's kernel is loaded: compute its rows with it (this actor owns it from now on). */
    public record Serve(ExpertId id, ExpertKernel kernel, ActorRef<ExpertActor.Command> owner) implements Command {
    }

    /**
     * The expert's actor restarts or stops: close {@code kernel} and stop using it. While it
     * restarts (it reloads and hands a new kernel over) batches for it wait here instead of failing.
     */
    public record Retire(ExpertId id, ExpertKernel kernel, boolean restarting) implements Command {
    }

    /** Batches that may wait for experts being reloaded; beyond that they fail at once. */
    static final int MAX_WAITING = 256;

    /** Asks how much this device has computed. */
    public record GetStats(ActorRef<Stats> replyTo) implements Command {
    }

    /**
     * What a device has computed since it started (tests and benchmarks count messages with it).
     *
     * @param batches {@link ComputeBatch} messages received
     * @param rows expert rows computed
     * @param experts experts served now
     */
    public record Stats(String device, long batches, long rows, int experts) {
    }

    private record Served(ExpertKernel kernel, ActorRef<ExpertActor.Command> owner) {
    }

    private final String name;
    private final Device device;
    private final int hidden;
    private final DType dtype;
    private final Map<ExpertId, Served> served = new HashMap<>();
    private final Set<ExpertId> reloading = new HashSet<>();         // restarting: its batches wait
    private final List<ComputeBatch> waiting = new ArrayList<>();    // batches for a reloading expert
    private long batches;
    private long rows;

    private DeviceCompute(ActorContext<Command> context, String name, Device device, int hidden, DType dtype) {
        super(context);
        this.name = name;
        this.device = device;
        this.hidden = hidden;
        this.dtype = dtype;
    }

    /**
     * @param name the device id (in failures)
     * @param dtype what outputs are sent back in: the experts' dtype
     */
    public static Behavior<Command> create(String name, Device device, int hidden, DType dtype) {
        // Resume on a bug: a restart would forget every kernel handed over, and the experts would
        // not know to hand them again. Engine faults are caught per batch and never reach here.
        return Behaviors.supervise(Behaviors.<Command>setup(ctx -> new DeviceCompute(ctx, name, device, hidden,
                dtype))).onFailure(SupervisorStrategy.resume());
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(ComputeBatch.class, this::onBatch)
                .onMessage(Serve.class, this::onServe)
                .onMessage(Retire.class, this::onRetire)
                .onMessage(GetStats.class, g -> {
                    g.replyTo().tell(new Stats(name, batches, rows, served.size()));
                    return this;
                })
                .onSignal(PostStop.class, s -> {
                    served.values().forEach(v -> v.kernel().close());
                    served.clear();
                    return this;
                })
                .build();
    }

    private Behavior<Command> onServe(Serve s) {
        Served old = served.put(s.id(), new Served(s.kernel(), s.owner()));
        if (old != null && old.kernel() != s.kernel()) {
            old.kernel().close(); // its Retire is on the way; closing twice is harmless
        }
        if (reloading.remove(s.id())) {
            retry();
        }
        return this;
    }

    private Behavior<Command> onRetire(Retire r) {
        Served now = served.get(r.id());
        if (now != null && now.kernel() == r.kernel()) {
            served.remove(r.id());
        }
        r.kernel().close();
        if (r.restarting()) {
            reloading.add(r.id());
        } else if (reloading.remove(r.id())) {
            retry(); // stopped for good: its waiting batches now fail, naming it
        }
        return this;
    }

    /** Runs again the waiting batches, which wait again or run or fail as their experts now stand. */
    private void retry() {
        List<ComputeBatch> again = List.copyOf(waiting);
        waiting.clear();
        again.forEach(this::compute);
    }

    private Behavior<Command> onBatch(ComputeBatch b) {
        batches++;
        compute(b);
        return this;
    }

    private void compute(ComputeBatch b) {
        for (int e : b.experts()) {
            if (reloading.contains(new ExpertId(b.layer(), e)) && waiting.size() < MAX_WAITING) {
                waiting.add(b); // the sender's step timeout still bounds the wait
                return;
            }
        }
        String bad = check(b);
        if (bad != null) {
            b.replyTo().tell(new BatchFailed(b.stepId(), "device " + name + ", layer " + b.layer() + ": " + bad));
            return;
        }
        long start = System.nanoTime();
        int total = b.rows().rows();
        WireTensor out;
        int at = -1;
        ByteBuffer in = b.rows().toDirectF32();
        try (NDManager step = NDManager.newBaseManager(device)) {
            NDArray x = step.create(in, new Shape(total, hidden), DataType.FLOAT32);
            NDArray all = scripted(b, x);
            if (all == null) {
                NDList outs = new NDList(b.experts().length);
                int from = 0;
                for (at = 0; at < b.experts().length; at++) {
                    int n = b.counts()[at];
                    NDArray rowsOf = b.experts().length == 1 ? x : x.get(new NDIndex("{}:{}", from, from + n));
                    outs.add(served.get(new ExpertId(b.layer(), b.experts()[at])).kernel().apply(rowsOf));
                    from += n;
                }
                at = -1;
                all = outs.size() == 1 ? outs.get(0) : NDArrays.concat(outs, 0);
            }
            out = WireTensor.of(dtype, all.toByteBuffer(), total, hidden);
        } catch (RuntimeException e) {
            String who = at >= 0 ? "expert " + new ExpertId(b.layer(), b.experts()[at]) : "the batch";
            b.replyTo().tell(new BatchFailed(b.stepId(), "device " + name + ": " + who + " failed: " + e));
            if (at >= 0) {
                // After an engine error its arrays are suspect: stop using them and let the
                // expert's supervisor reload it (it hands the new kernel over when loaded).
                Served suspect = served.remove(new ExpertId(b.layer(), b.experts()[at]));
                suspect.owner().tell(new ExpertActor.InjectFault("engine fault computing its rows: " + e));
            }
            return;
        } finally {
            Reference.reachabilityFence(in); // the engine may alias the buffer until the manager closes
        }
        rows += total;
        b.replyTo().tell(new BatchComputed(b.stepId(), out, System.nanoTime() - start));
    }

    /**
     * Every expert of the batch in one engine call, when each has its weights to hand over
     * ({@link ExpertKernel#weights}); null otherwise, and the experts are applied one by one.
     * An engine fault here names the batch, not one expert: no expert is restarted for it.
     */
    private NDArray scripted(ComputeBatch b, NDArray x) {
        int n = b.experts().length;
        NDArray[] gateUps = new NDArray[n];
        NDArray[] downs = new NDArray[n];
        for (int i = 0; i < n; i++) {
            NDArray[] w = served.get(new ExpertId(b.layer(), b.experts()[i])).kernel().weights();
            if (w == null) {
                return null;
            }
            gateUps[i] = w[0];
            downs[i] = w[1];
        }
        return ExpertsScript.of(dtype).outputs(x, b.counts(), gateUps, downs);
    }

    /** What is wrong with {@code b}, or null. */
    private String check(ComputeBatch b) {
        if (b.experts().length == 0 || b.experts().length != b.counts().length) {
            return b.experts().length + " experts with " + b.counts().length + " row counts";
        }
        if (b.rows().cols() != hidden) {
            return "rows of " + b.rows().cols() + " values, the model's hidden size is " + hidden;
        }
        long sum = 0;
        for (int i = 0; i < b.experts().length; i++) {
            if (b.counts()[i] < 1) {
                return "expert " + b.experts()[i] + " given " + b.counts()[i] + " rows";
            }
            sum += b.counts()[i];
            ExpertId id = new ExpertId(b.layer(), b.experts()[i]);
            if (!served.containsKey(id)) {
                return "expert " + id + " is not served here (not loaded, reloading after a fault, or unloaded)";
            }
        }
        if (sum != b.rows().rows()) {
            return "row counts sum to " + sum + " but " + b.rows().rows() + " rows came";
        }
        return null;
    }
}
