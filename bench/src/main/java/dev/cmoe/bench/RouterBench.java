package dev.cmoe.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.deploy.bench.SyntheticModel;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import java.util.SplittableRandom;
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
 * The router of one MoE layer at LLaMA-2-7B shape (d 4096, S2A2E16: 14 routed experts of 688
 * neurons): the engine part (scores, softmax, copy to Java) and the Java top-k selection, per step
 * of {@code tokens} rows.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class RouterBench {
    @Param({"1", "32", "512"})
    int tokens;

    private NDManager manager;
    private MoeFeedForward ffn;
    private NDArray x;
    private float[] probs;
    private float[] bias;
    private float[] scale;

    @Setup(Level.Trial)
    public void setup() {
        ModelConfig config = SyntheticModel.config(4096, 11008, 1, 32, 32, 1024, 64);
        MoeConfig moe = SyntheticModel.moe(11008, 16, 2, 2);
        manager = NDManager.newBaseManager();
        ffn = MoeFeedForward.load(manager, new SyntheticModel(1), 0, config, moe);
        ffn.releaseRoutedExperts(); // only the router is measured
        x = manager.randomNormal(new Shape(tokens, 4096));
        probs = ffn.route(x).probs();
        bias = new float[moe.routed()];
        scale = new float[moe.routed()];
        SplittableRandom r = new SplittableRandom(3);
        for (int j = 0; j < bias.length; j++) {
            bias[j] = (float) (r.nextDouble() * 1e-3);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        ffn.close();
        manager.close();
    }

    /** Scores, softmax, copy to Java and selection: what a router actor does per step. */
    @Benchmark
    public Routing route() {
        return ffn.route(x);
    }

    /** Only the Java top-N_k selection over the probabilities. */
    @Benchmark
    public Routing select() {
        return Routing.select(probs, tokens, 2, bias, scale);
    }
}
