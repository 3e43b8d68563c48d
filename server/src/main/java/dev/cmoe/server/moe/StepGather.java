package dev.cmoe.server.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.cluster.ClusterSettings;
import dev.cmoe.experts.cluster.WireTensor;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.model.safetensors.DType;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import org.apache.pekko.actor.Address;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;

/**
 * The scatter–gather of one routed step of one layer: one {@link DeviceCompute.ComputeBatch} per
 * device, carrying the rows of every part that device's replicas compute (a part is a selected
 * expert's rows, or a slice of them when the router split a hot expert over its replicas), in the
 * model's dtype; the shared expert computed concurrently; an expected reply count, and timeouts
 * that answer {@link RouterActor.Failed} instead of hanging. When the router reports a lost device,
 * the rows sent there are sent again, one batch per surviving device (the experts are
 * deterministic, so the step's result is the same); an expert left without any replica fails the
 * step as unavailable after {@link RouterActor.Limits#unavailable()}. It answers exactly once,
 * tells the router it is idle and waits for the router's next step ({@link Begin}): a layer's
 * gather lives across steps, so a step costs no actor spawn. Late or duplicate replies of a
 * finished step are ignored.
 */
final class StepGather extends AbstractBehavior<StepGather.Command> {
    private static final int BATCH_BITS = 16;
    private static final long BATCH_MASK = (1L << BATCH_BITS) - 1;

    sealed interface Command permits Begin, BatchReply, SharedDone, TableChanged, TimedOut, Homeless, Stalled {
    }

    /**
     * The router's next step for this gather: its routing, the parts and their replicas, the table.
     *
     * @param seq the router's own number of the step, unique and positive: what batch tags carry, so that
     *     a late answer is never taken for a later step whatever step ids the asker chose
     */
    record Begin(long seq, Routing routing, RouterActor.Route route, List<Part> parts, LayerReplicas replicas)
            implements Command {
    }

    /**
     * Rows {@code [from, to)} of expert {@code expert}'s rows of the step ({@link Routing#rows}),
     * computed by {@code replica} (null: none is live yet).
     */
    record Part(int expert, int from, int to, Replica replica) {
        int rows() {
            return to - from;
        }
    }

    /** The router's new replica table, with the computes of the devices that were lost. */
    record TableChanged(LayerReplicas replicas, Set<ActorRef<DeviceCompute.Command>> lost) implements Command {
    }

    private record BatchReply(DeviceCompute.BatchReply reply) implements Command {
    }

    /** @param output (tokens, hidden) row-major, or null with {@code failure}; of step {@code seq} */
    private record SharedDone(long seq, float[] output, Throwable failure) implements Command {
    }

    /** What a gather keeps between steps. */
    private record Setup(ActorContext<Command> context, TimerScheduler<Command> timers, int layer, int hidden,
                         DType dtype, MoeFeedForward ffn, RouterActor.Limits limits,
                         ActorRef<RouterActor.Command> router, ActorRef<DeviceCompute.BatchReply> replies) {
    }

    private enum TimedOut implements Command {
        INSTANCE
    }

    private enum Homeless implements Command {
        INSTANCE
    }

    private enum Stalled implements Command {
        INSTANCE
    }

    private final Setup setup;
    private final long seq;
    private final int layer;
    private final int hidden;
    private final DType dtype;
    private final MoeFeedForward ffn;
    private final Routing routing;
    private final RouterActor.Route route;
    private final RouterActor.Limits limits;
    private final ActorRef<RouterActor.Command> router;
    private final TimerScheduler<Command> timers;
    private final ActorRef<DeviceCompute.BatchReply> replies;
    private final Part[] parts;
    private final float[] outputs;            // (routed rows, hidden): the experts' rows stacked in expert order
    private final int[] firstRow;             // per routed expert: where its rows start in outputs
    private final Replica[] sentTo;           // per part: the replica computing it, null while homeless
    private final List<int[]> batches = new ArrayList<>(); // batch index (in the tag) -> its parts, in row order
    private final List<ActorRef<DeviceCompute.Command>> batchDevice = new ArrayList<>(); // batch index -> where it went
    private final TreeSet<Integer> waiting = new TreeSet<>(); // parts yet to answer
    private final Set<ActorRef<DeviceCompute.Command>> lost = new HashSet<>(); // devices lost during this step
    private final boolean hasShared;
    private LayerReplicas replicas;
    private float[] shared;                    // (tokens, hidden), null until computed (or without one)
    private int expected;                      // parts and shared expert still to answer

    private StepGather(Setup setup, Begin step) {
        super(setup.context());
        this.setup = setup;
        this.seq = step.seq();
        this.layer = setup.layer();
        this.hidden = setup.hidden();
        this.dtype = setup.dtype();
        this.ffn = setup.ffn();
        this.routing = step.routing();
        this.route = step.route();
        this.limits = setup.limits();
        this.router = setup.router();
        this.timers = setup.timers();
        this.replicas = step.replicas();
        this.replies = setup.replies();
        this.parts = step.parts().toArray(Part[]::new);
        this.firstRow = new int[routing.nRouted()];
        int rows = 0;
        for (int j = 0; j < firstRow.length; j++) {
            firstRow[j] = rows;
            rows += routing.rows(j).length;
        }
        this.outputs = new float[rows * hidden];
        this.sentTo = new Replica[this.parts.length];
        this.hasShared = route.withShared() && ffn.config().shared() > 0;
        List<Integer> all = new ArrayList<>();
        for (int p = 0; p < this.parts.length; p++) {
            Part part = this.parts[p];
            waiting.add(p);
            all.add(p);
            sentTo[p] = part.replica();
        }
        expected = waiting.size();
        timers.startSingleTimer(TimedOut.INSTANCE, limits.expert());
        if (limits.watch() != null) {
            timers.startSingleTimer(Stalled.INSTANCE, limits.stallAfter());
        }
        if (hasShared) {
            expected++;
            // The shared expert runs on this dispatcher's pool while the routed experts work.
            Executor executor = getContext().getSystem().dispatchers()
                    .lookup(DispatcherSelector.fromConfig(RouterActor.DISPATCHER));
            CompletableFuture<float[]> done = CompletableFuture.supplyAsync(this::computeShared, executor);
            getContext().pipeToSelf(done, (out, failure) -> new SharedDone(seq, out, failure));
        }
        sendByDevice(all);
        armHomeless();
    }

    /** An idle gather of layer {@code layer}'s steps, which {@code router} hands them to. */
    static Behavior<Command> create(int layer, int hidden, DType dtype, MoeFeedForward ffn, RouterActor.Limits limits,
                                    ActorRef<RouterActor.Command> router) {
        return Behaviors.setup(ctx -> Behaviors.withTimers(timers -> idle(new Setup(ctx, timers, layer, hidden, dtype,
                ffn, limits, router, ctx.messageAdapter(DeviceCompute.BatchReply.class, BatchReply::new)))));
    }

    /** Between steps: the next {@link Begin} starts one; anything else is a finished step's and is dropped. */
    private static Behavior<Command> idle(Setup setup) {
        return Behaviors.receive(Command.class)
                .onMessage(Begin.class, b -> new StepGather(setup, b))
                .onAnyMessage(m -> Behaviors.same())
                .build();
    }

    /**
     * The id a batch carries and its answer echoes: the step in the high bits, the batch in the
     * low ones, so that a re-sent batch's answer is told from the first one's.
     */
    private long tag(int batch) {
        return seq << BATCH_BITS | batch;
    }

    /** The router's number of the step ({@link Begin#seq}) a batch's id belongs to. */
    static long stepOf(long tag) {
        return tag >>> BATCH_BITS;
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(BatchReply.class, this::onBatchReply)
                .onMessage(SharedDone.class, this::onSharedDone)
                .onMessage(TableChanged.class, this::onTableChanged)
                .onMessage(Homeless.class, h -> homeless().isEmpty() ? this
                        : fail("experts " + homeless() + " of layer " + layer + " have no live replica after "
                        + limits.unavailable(), true))
                .onMessage(Stalled.class, s -> reportStalled())
                .onMessage(TimedOut.class, t -> fail("experts " + experts(waiting) + (hasShared && shared == null
                        ? " and the shared expert" : "") + " did not answer within " + limits.expert(), false))
                .build();
    }

    private Behavior<Command> onBatchReply(BatchReply m) {
        int b = batch(m.reply().stepId());
        if (b < 0) {
            return this; // not ours
        }
        int[] ps = batches.get(b);
        switch (m.reply()) {
            case DeviceCompute.BatchComputed c -> {
                int rows = 0;
                for (int p : ps) {
                    rows += parts[p].rows();
                }
                if (c.outputs().rows() != rows || c.outputs().cols() != hidden) {
                    return fail("device answered (" + c.outputs().rows() + ", " + c.outputs().cols() + ") for "
                            + rows + " rows × " + hidden, false);
                }
                Map<ActorRef<ExpertActor.Command>, Integer> done = new HashMap<>();
                int at = 0;
                for (int p : ps) {
                    Part part = parts[p];
                    if (waiting.remove(p)) { // else a duplicate: answered by the replica it was moved to
                        c.outputs().read(at, part.rows(), outputs, (firstRow[part.expert()] + part.from()) * hidden);
                        expected--;
                        if (sentTo[p] != null) {
                            done.merge(sentTo[p].ref(), part.rows(), Integer::sum);
                        }
                    }
                    at += part.rows();
                }
                if (!done.isEmpty()) {
                    router.tell(new RouterActor.WorkDone(getContext().getSelf(), done));
                }
            }
            case DeviceCompute.BatchFailed f -> {
                ActorRef<DeviceCompute.Command> from = batchDevice.get(b);
                for (int p : ps) {
                    // a part re-sent elsewhere since (its device was lost) waits for the new answer instead
                    if (waiting.contains(p) && sentTo[p] != null && sentTo[p].compute().equals(from)) {
                        return fail(f.reason(), false);
                    }
                }
            }
        }
        return expected == 0 ? finish() : this;
    }

    private Behavior<Command> onSharedDone(SharedDone m) {
        if (m.seq() != seq) {
            return this; // an earlier step's, which ended before its shared expert did
        }
        if (m.failure() != null) {
            return fail("shared expert: " + m.failure(), false);
        }
        shared = m.output();
        expected--;
        return expected == 0 ? finish() : this;
    }

    /** The batch {@code tag} answers, or -1 when it is not one of this step's. */
    private int batch(long tag) {
        int b = (int) (tag & BATCH_MASK);
        return stepOf(tag) == seq && b < batches.size() ? b : -1;
    }

    /** Re-sends the rows of parts whose replica was lost, or that had none, to a live replica. */
    private Behavior<Command> onTableChanged(TableChanged t) {
        replicas = t.replicas();
        lost.addAll(t.lost());
        List<Integer> moved = new ArrayList<>();
        for (int p : waiting) {
            Replica was = sentTo[p];
            if (was != null && !lost.contains(was.compute())) {
                continue; // still alive (perhaps retiring: it answers before it is unloaded)
            }
            int j = parts[p].expert();
            Replica next = replicas.of(j).stream().filter(r -> !lost.contains(r.compute())).findFirst().orElse(null);
            sentTo[p] = next;
            router.tell(new RouterActor.WorkMoved(getContext().getSelf(), was == null ? null : was.ref(),
                    next == null ? null : next.ref(), parts[p].rows()));
            if (next != null) {
                getContext().getLog().info("layer {} step {}: expert {} rows {}..{} re-sent from {} to {}", layer,
                        route.stepId(), j, parts[p].from(), parts[p].to(), was == null ? "nowhere" : was.device(),
                        next.device());
                moved.add(p);
            }
        }
        sendByDevice(moved);
        armHomeless();
        return this;
    }

    /** Sends {@code ps} (parts with a replica; the others wait for one), one batch per device. */
    private void sendByDevice(List<Integer> ps) {
        Map<ActorRef<DeviceCompute.Command>, List<Integer>> byDevice = new LinkedHashMap<>();
        for (int p : ps) {
            if (sentTo[p] != null) {
                byDevice.computeIfAbsent(sentTo[p].compute(), k -> new ArrayList<>()).add(p);
            }
        }
        byDevice.forEach(this::send);
    }

    private void send(ActorRef<DeviceCompute.Command> compute, List<Integer> ps) {
        int b = batches.size();
        if (b > BATCH_MASK) {
            throw new IllegalStateException("layer " + layer + " step " + route.stepId() + " sent " + b + " batches");
        }
        int[] ids = ps.stream().mapToInt(Integer::intValue).toArray();
        batches.add(ids);
        batchDevice.add(compute);
        int[] experts = new int[ids.length];
        int[] counts = new int[ids.length];
        int total = 0;
        for (int i = 0; i < ids.length; i++) {
            experts[i] = parts[ids[i]].expert();
            counts[i] = parts[ids[i]].rows();
            total += counts[i];
        }
        if (limits.maxMessageBytes() > 0 && compute.path().address().hasGlobalScope()
                && ClusterSettings.tensorMessageBytes(total, ids.length, hidden, dtype) > limits.maxMessageBytes()) {
            // Artery would drop it silently; say why instead of waiting for the timeout.
            getContext().getSelf().tell(new BatchReply(new DeviceCompute.BatchFailed(tag(b), total + " rows × "
                    + hidden + " " + dtype.shortName() + " values for " + sentTo[ids[0]].device() + " exceed the "
                    + "cluster's frame size of " + limits.maxMessageBytes() + " bytes (size frames for "
                    + "--max-batch-tokens)")));
            return;
        }
        // the rows go straight from the step's input into the message, narrowed to the model's dtype
        WireTensor.Writer rows = WireTensor.writer(dtype, total, hidden);
        for (int p : ids) {
            int[] tokens = routing.rows(parts[p].expert());
            for (int i = parts[p].from(); i < parts[p].to(); i++) {
                rows.putRow(route.x(), tokens[i]);
            }
        }
        compute.tell(new DeviceCompute.ComputeBatch(tag(b), layer, experts, counts, rows.done(), replies));
    }

    /** Reports the node of every remote device this step still waits on to the transport watch. */
    private Behavior<Command> reportStalled() {
        Set<Address> nodes = new HashSet<>();
        for (int p : waiting) {
            if (sentTo[p] != null && sentTo[p].compute().path().address().hasGlobalScope()) {
                nodes.add(sentTo[p].compute().path().address());
            }
        }
        nodes.forEach(n -> limits.watch().tell(new TransportWatch.Stalled(n)));
        return this;
    }

    /** The experts of parts without a live replica. */
    private TreeSet<Integer> homeless() {
        TreeSet<Integer> out = new TreeSet<>();
        for (int p : waiting) {
            if (sentTo[p] == null) {
                out.add(parts[p].expert());
            }
        }
        return out;
    }

    private TreeSet<Integer> experts(Set<Integer> partIds) {
        TreeSet<Integer> out = new TreeSet<>();
        partIds.forEach(p -> out.add(parts[p].expert()));
        return out;
    }

    private void armHomeless() {
        if (homeless().isEmpty()) {
            timers.cancel(Homeless.INSTANCE);
        } else if (!timers.isTimerActive(Homeless.INSTANCE)) {
            timers.startSingleTimer(Homeless.INSTANCE, limits.unavailable());
        }
    }

    /**
     * Gate-weighted sum exactly as {@link MoeFeedForward#forward}: shared(x) + combine(routing, outputs),
     * or the combine alone when the asker adds the shared expert itself.
     */
    private Behavior<Command> finish() {
        int tokens = route.tokens();
        float[] out;
        try (NDManager m = NDManager.newBaseManager()) {
            // every part has answered: the stacked rows cross to the engine at once
            NDArray routed = ffn.combineStacked(routing, m.create(outputs, new Shape(outputs.length / hidden, hidden)));
            out = (hasShared ? m.create(shared, new Shape(tokens, hidden)).add(routed) : routed).toFloatArray();
        } catch (RuntimeException e) {
            return fail("combine failed: " + e, false);
        }
        return ended(new RouterActor.Routed(route.stepId(), out));
    }

    private Behavior<Command> fail(String reason, boolean unavailable) {
        return ended(new RouterActor.Failed(route.stepId(), "layer " + layer + ", step " + route.stepId()
                + ": " + reason, unavailable));
    }

    /**
     * The step has its answer: its timers go, the router settles what it did not report and gets
     * this gather back, and only then does the asker hear, so that the asker's next step finds the
     * gather idle (both messages are in the router's mailbox in that order).
     */
    private Behavior<Command> ended(RouterActor.Reply answer) {
        timers.cancelAll();
        router.tell(new RouterActor.GatherIdle(getContext().getSelf()));
        route.replyTo().tell(answer);
        return idle(setup);
    }

    /** Runs off the actor's thread: touches only immutable inputs and its own manager. */
    private float[] computeShared() {
        try (NDManager m = NDManager.newBaseManager()) {
            return ffn.shared(m.create(route.x(), new Shape(route.tokens(), hidden))).toFloatArray();
        }
    }
}
