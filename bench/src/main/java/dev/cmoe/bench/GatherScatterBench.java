package dev.cmoe.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.deploy.bench.SyntheticModel;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The data movement of a MoE layer without its matrix products, at d 4096 with 14 routed experts,
 * N_k 2: gathering each expert's rows from the step's (tokens, d) input (one indexed copy per
 * expert) and the combine that scales them by their gates and sums them back per token.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class GatherScatterBench {
    @Param({"8", "32", "128"})
    int tokens;

    private NDManager manager;
    private MoeFeedForward ffn;
    private NDArray x;
    private Routing routing;

    @Setup(Level.Trial)
    public void setup() {
        ModelConfig config = SyntheticModel.config(4096, 11008, 1, 32, 32, 1024, 64);
        MoeConfig moe = SyntheticModel.moe(11008, 16, 2, 2);
        manager = NDManager.newBaseManager();
        ffn = MoeFeedForward.load(manager, new SyntheticModel(1), 0, config, moe);
        ffn.releaseRoutedExperts();
        x = manager.randomNormal(new Shape(tokens, 4096));
        routing = ffn.route(x);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        ffn.close();
        manager.close();
    }

    /** Gather every selected expert's rows, then combine them as if they were the experts' outputs. */
    @Benchmark
    public float gatherAndCombine() {
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            NDArray[] outputs = new NDArray[routing.nRouted()];
            for (int j = 0; j < outputs.length; j++) {
                int[] rows = routing.rows(j);
                if (rows.length > 0) {
                    long[] index = new long[rows.length];
                    for (int i = 0; i < rows.length; i++) {
                        index[i] = rows[i];
                    }
                    outputs[j] = x.get(new NDIndex("{}", manager.create(index)));
                }
            }
            return ffn.combine(routing, outputs).getFloat(0, 0);
        }
    }
}
