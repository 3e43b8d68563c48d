package dev.cmoe.model.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.llama.LayerScript;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.WeightKernels;

/**
 * One layer's routed experts stacked into two tensors, so that a step runs all of its routed
 * experts in a few engine calls instead of about eight per selected expert: the gate and up
 * projections of expert j are fused into one (hidden, 2m) block of {@code gateUpT}, its down
 * projection is block j of {@code downT}, and {@link #forward} either multiplies every expert
 * at once (one batched product over all blocks, rows padded per expert) or, when that would read
 * much weight no row needs, only the used experts' blocks, sharing one activation and one
 * combine either way.
 */
final class GroupedExperts implements AutoCloseable {
    /**
     * Unused experts' weight bytes that a batched product may read in vain: below this, a
     * layer's experts are small enough that engine calls, not memory traffic, decide its time
     * (the shipped model's are 0.2 MB each, so a one-token step, which leaves 12 of 14 unused,
     * still runs only its used experts), above it (a 7B model's are 34 MB each) the step reads
     * only the experts it uses.
     */
    static final long SLACK_BYTES = 2L << 20;

    /**
     * Rows per expert that a batched product may pad to without regard to the arithmetic: a
     * product over this few rows is bound by reading the weights, so padding costs nothing;
     * beyond it padding may at most double the rows.
     */
    static final int FREE_ROWS = 16;

    /**
     * Steps of up to this many tokens combine with one product of a (tokens, rows) matrix of
     * gates instead of a gather, a product and a sum over slots: two engine calls instead of
     * six, while the product's arithmetic (tokens × rows × hidden) stays below a gather's cost.
     */
    static final int MATMUL_COMBINE_TOKENS = 8;

    /** How a step's experts are multiplied; {@link #AUTO} picks by the rules above. */
    enum Strategy { AUTO, BATCHED, USED }

    private final WeightKernels kernels;
    private final int routed;
    private final long expertBytes;  // one expert's weights
    private final NDArray gateUpT;   // (N_r, hidden, 2m): [gate_j; up_j] transposed
    private final NDArray downT;     // (N_r, m, hidden)
    private final NDArray[] gateUpOf; // block j of gateUpT: (hidden, 2m)
    private final NDArray[] downOf;   // block j of downT: (m, hidden)

    private GroupedExperts(WeightKernels kernels, int routed, long expertBytes, NDArray gateUpT, NDArray downT) {
        this.kernels = kernels;
        this.routed = routed;
        this.expertBytes = expertBytes;
        this.gateUpT = gateUpT;
        this.downT = downT;
        this.gateUpOf = new NDArray[routed];
        this.downOf = new NDArray[routed];
        for (int j = 0; j < routed; j++) {
            gateUpOf[j] = gateUpT.get(j);
            downOf[j] = downT.get(j);
        }
    }

    /** Reads layer {@code layer}'s routed experts into {@code manager}, held by {@code kernels}, and stacks them. */
    static GroupedExperts load(NDManager manager, TensorSource source, int layer, int hidden, MoeConfig moe,
                               WeightKernels kernels) {
        int m = moe.expertSize();
        int n = moe.routed();
        NDArray[] gateUp = new NDArray[2 * n];
        NDArray[] down = new NDArray[n];
        try {
            for (int j = 0; j < n; j++) {
                gateUp[2 * j] = kernels.load(manager, source, MoeWeightNames.expert(layer, j, MoeWeightNames.GATE),
                        m, hidden);
                gateUp[2 * j + 1] = kernels.load(manager, source, MoeWeightNames.expert(layer, j, MoeWeightNames.UP),
                        m, hidden);
                down[j] = kernels.load(manager, source, MoeWeightNames.expert(layer, j, MoeWeightNames.DOWN),
                        hidden, m);
            }
            NDArray gu = stack(kernels, gateUp, new Shape(n, 2L * m, hidden));
            NDArray dn = stack(kernels, down, new Shape(n, hidden, m));
            long bytes = 3L * m * hidden * kernels.dtype().byteSize();
            return new GroupedExperts(kernels, n, bytes, transposed(gu), transposed(dn));
        } finally {
            closeAll(gateUp);
            closeAll(down);
        }
    }

    /** {@code parts} joined along their first axis and viewed as {@code shape}. */
    private static NDArray stack(WeightKernels kernels, NDArray[] parts, Shape shape) {
        try (NDArray flat = kernels.concat(parts, 0)) {
            return flat.reshape(shape);
        }
    }

    /** The (n, a, b) → (n, b, a) view; BLAS reads the transposed strides in place. */
    private static NDArray transposed(NDArray stacked) {
        NDArray t = stacked.transpose(0, 2, 1);
        stacked.close();
        return t;
    }

    private static void closeAll(NDArray[] arrays) {
        for (NDArray a : arrays) {
            if (a != null) {
                a.close();
            }
        }
    }

    /** Expert {@code j}'s SwiGLU, unweighted. rows: (n, hidden) → (n, hidden). */
    NDArray expert(int j, NDArray rows) {
        return Ops.fusedSwiglu(rows, gateUpOf[j], downOf[j], kernels);
    }

    /**
     * Σ over each token's selected experts of g · expert(x): summed in slot order as
     * {@link MoeFeedForward#combine} does, or for a few tokens as one product with the gates.
     *
     * @param x (tokens, hidden)
     * @return (tokens, hidden)
     */
    NDArray forward(NDArray x, Routing routing, Strategy strategy) {
        Plan p = plan(routing, strategy);
        NDArray outputs = p.batched() ? batched(x, p) : used(x, p);
        return combine(x.getManager(), routing, p.position(), outputs);
    }

    /**
     * The combine of {@link #forward} over outputs computed elsewhere (by expert actors): the used
     * experts' rows stacked in expert order, each expert's in its routing order, as the used
     * plan lays them out.
     *
     * @param stacked (routed rows, hidden)
     * @return (tokens, hidden)
     */
    static NDArray combineStacked(NDManager manager, Routing routing, NDArray stacked) {
        return combine(manager, routing, stackedPositions(routing), stacked);
    }

    private static NDArray combine(NDManager manager, Routing routing, long[] position, NDArray outputs) {
        int tokens = routing.tokens();
        if (tokens <= MATMUL_COMBINE_TOKENS) {
            return combineMatrix(manager, routing, position, outputs.getShape().get(0)).matMul(outputs);
        }
        long hidden = outputs.getShape().get(1);
        return outputs.get(new NDIndex("{}", manager.create(position)))
                .mul(gateColumn(manager, routing))
                .reshape(tokens, routing.nActive(), hidden).sum(new int[] {1});
    }

    /** Slot t·N_k + k → its row among the used experts' outputs stacked in expert order. */
    private static long[] stackedPositions(Routing routing) {
        long[] position = new long[routing.tokens() * routing.nActive()];
        int at = 0;
        for (int j = 0; j < routing.nRouted(); j++) {
            for (int slot : routing.slots(j)) {
                position[slot] = at++;
            }
        }
        return position;
    }

    /**
     * {@code residual + shared + Σ g · expert(x)} in one call of {@code script}, which runs the
     * very operations of {@link #forward} and {@link MoeFeedForward#shared} on the same plan.
     *
     * @param shared the shared expert's {gate/up, down} transposed, or null when there is none
     */
    NDArray addTo(NDArray residual, NDArray x, Routing routing, Strategy strategy, LayerScript script,
                  NDArray[] shared) {
        Plan p = plan(routing, strategy);
        NDManager manager = x.getManager();
        NDArray take = p.batched() || !p.everyToken() ? manager.create(p.take()) : null;
        NDArray[] gateUps;
        NDArray[] downs;
        if (p.batched()) {
            gateUps = new NDArray[] {gateUpT};
            downs = new NDArray[] {downT};
        } else {
            gateUps = new NDArray[p.experts().length];
            downs = new NDArray[gateUps.length];
            for (int i = 0; i < gateUps.length; i++) {
                gateUps[i] = gateUpOf[p.experts()[i]];
                downs[i] = downOf[p.experts()[i]];
            }
        }
        long rows = p.batched() ? (long) routed * p.widest() : (long) routing.tokens() * routing.nActive();
        boolean matrix = routing.tokens() <= MATMUL_COMBINE_TOKENS;
        NDArray combineA = matrix ? combineMatrix(manager, routing, p.position(), rows) : manager.create(p.position());
        NDArray combineB = matrix ? null : gateColumn(manager, routing);
        return script.mixture(residual, x, take, gateUps, downs, p.cuts(), p.widest(), combineA, combineB,
                routing.nActive(), shared);
    }

    /**
     * Which rows go where in one step. Batched: expert j's rows at [j·widest, j·widest + n_j) of
     * {@code take} (padding takes row 0; no slot reads its output). Used: the used experts'
     * rows one after another, sorted by expert, {@code cuts} where each but the first starts, and
     * {@code everyToken} when each used expert takes every token, so that x itself is every
     * expert's input. {@code position}: slot t·N_k + k → its row among the experts' outputs.
     */
    record Plan(boolean batched, int widest, long[] take, long[] position, int[] experts, long[] cuts,
                boolean everyToken) {
    }

    Plan plan(Routing routing, Strategy strategy) {
        int tokens = routing.tokens();
        int nActive = routing.nActive();
        int used = 0;
        int widest = 0;
        for (int j = 0; j < routed; j++) {
            int n = routing.rows(j).length;
            used += n > 0 ? 1 : 0;
            widest = Math.max(widest, n);
        }
        Strategy s = strategy != Strategy.AUTO ? strategy
                : batched((routed - used) * expertBytes, routed, widest, tokens * nActive) ? Strategy.BATCHED
                : Strategy.USED;
        if (s == Strategy.BATCHED) {
            long[] position = new long[tokens * nActive];
            long[] take = new long[routed * widest];
            for (int j = 0; j < routed; j++) {
                int[] rows = routing.rows(j);
                int[] slots = routing.slots(j);
                for (int i = 0; i < rows.length; i++) {
                    take[j * widest + i] = rows[i];
                    position[slots[i]] = (long) j * widest + i;
                }
            }
            return new Plan(true, widest, take, position, null, null, false);
        }
        int[] experts = new int[used];
        int[] from = new int[used];
        long[] take = new long[tokens * nActive];
        boolean everyToken = true;
        int u = 0;
        int at = 0;
        for (int j = 0; j < routed; j++) {
            int[] rows = routing.rows(j);
            if (rows.length == 0) {
                continue;
            }
            everyToken &= rows.length == tokens;
            experts[u] = j;
            from[u++] = at;
            for (int row : rows) {
                take[at++] = row;
            }
        }
        long[] position = stackedPositions(routing);
        long[] cuts = new long[used - 1];
        for (int i = 1; i < used; i++) {
            cuts[i - 1] = from[i];
        }
        return new Plan(false, widest, take, position, experts, cuts, everyToken);
    }

    /** The (tokens, rows) matrix whose row t holds token t's gates at its slots' output rows, 0 elsewhere. */
    private static NDArray combineMatrix(NDManager manager, Routing routing, long[] position, long rows) {
        int tokens = routing.tokens();
        int nActive = routing.nActive();
        float[] weights = new float[Math.toIntExact(tokens * rows)];
        for (int t = 0; t < tokens; t++) {
            for (int k = 0; k < nActive; k++) {
                weights[Math.toIntExact(t * rows + position[t * nActive + k])] = routing.gate(t, k);
            }
        }
        return manager.create(weights, new Shape(tokens, rows));
    }

    /** Every slot's gate as a (tokens·N_k, 1) column. */
    private static NDArray gateColumn(NDManager manager, Routing routing) {
        int tokens = routing.tokens();
        int nActive = routing.nActive();
        float[] gates = new float[tokens * nActive];
        for (int t = 0; t < tokens; t++) {
            for (int k = 0; k < nActive; k++) {
                gates[t * nActive + k] = routing.gate(t, k);
            }
        }
        return manager.create(gates, new Shape(tokens * nActive, 1));
    }

    /**
     * Whether one product over all {@code routed} experts, each padded to {@code widest} rows,
     * beats one product per used expert, when the unused experts weigh {@code unusedBytes} and
     * the step routes {@code rows} rows in all.
     */
    static boolean batched(long unusedBytes, int routed, int widest, int rows) {
        return unusedBytes <= SLACK_BYTES && (widest <= FREE_ROWS || (long) routed * widest <= 2L * rows);
    }

    /** Every expert in one batched product, expert j's rows padded to the widest: (N_r·widest, hidden). */
    private NDArray batched(NDArray x, Plan p) {
        long hidden = x.getShape().get(1);
        NDArray padded = x.get(new NDIndex("{}", x.getManager().create(p.take()))).reshape(routed, p.widest(), hidden);
        NDArray out = Ops.fusedSwiglu(padded, gateUpT, downT, kernels);
        return out.reshape((long) routed * p.widest(), hidden);
    }

    /**
     * The used experts only: one product per used expert and projection, one activation over all
     * their rows, which are gathered once, sorted by expert. (rows routed, hidden).
     */
    private NDArray used(NDArray x, Plan p) {
        int used = p.experts().length;
        NDList inputs = null;
        if (!p.everyToken()) {
            NDArray sorted = x.get(new NDIndex("{}", x.getManager().create(p.take())));
            inputs = used == 1 ? new NDList(sorted) : sorted.split(p.cuts(), 0);
        }
        NDList gateUp = new NDList(used);
        for (int i = 0; i < used; i++) {
            gateUp.add(kernels.project(p.everyToken() ? x : inputs.get(i), gateUpOf[p.experts()[i]]));
        }
        NDArray act = Ops.gatedSilu(used == 1 ? gateUp.head() : NDArrays.concat(gateUp));
        NDList acts = used == 1 ? new NDList(act) : act.split(p.cuts(), 0);
        NDList out = new NDList(used);
        for (int i = 0; i < used; i++) {
            out.add(kernels.project(acts.get(i), downOf[p.experts()[i]]));
        }
        return used == 1 ? out.head() : NDArrays.concat(out);
    }

    @Override
    public void close() {
        for (int j = 0; j < routed; j++) {
            gateUpOf[j].close();
            downOf[j].close();
        }
        gateUpT.close();
        downT.close();
    }
}
