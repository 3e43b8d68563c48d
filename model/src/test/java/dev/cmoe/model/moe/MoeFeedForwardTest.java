package dev.cmoe.model.moe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.LayerScript;
import dev.cmoe.model.llama.Ops;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.ReferenceMoe;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.List;
import java.util.Random;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class MoeFeedForwardTest {
    static final int HIDDEN = 24;
    /** Grouped vs per-expert products in float32: the engine's rounding, relative to the largest output. */
    static final double F32_TOLERANCE = 1e-6;
    /** In bfloat16 each product's output is rounded to 8 bits, so one rounding step may differ. */
    static final double BF16_TOLERANCE = 1.0 / 64;

    /** A one-layer MoE of the given shape with random weights, its reference, and a source to load it. */
    record Fixture(MoeConfig moe, ModelConfig config, Map<String, RandomModel.Tensor> tensors, ReferenceMoe reference) {
        static Fixture of(int experts, int shared, int active, int m, long seed) {
            MoeConfig moe = new MoeConfig(experts, shared, active, m, MoeConfig.ANALYTICAL, "test", null);
            ModelConfig config = RandomModel.config("llama", HIDDEN, experts * m, 1, 4, 2, 50, false, null);
            Map<String, RandomModel.Tensor> tensors = new LinkedHashMap<>();
            ReferenceMoe.randomLayer(tensors, moe, HIDDEN, 0, seed);
            return new Fixture(moe, config, tensors, new ReferenceMoe(moe, HIDDEN, 0, n -> tensors.get(n).data()));
        }

        TensorSource source() {
            return (name, shape) -> {
                RandomModel.Tensor t = tensors.get(name);
                if (t == null || !Arrays.equals(t.shape(), shape)) {
                    throw new IllegalArgumentException("no tensor " + name + " of shape " + Arrays.toString(shape));
                }
                return FloatBuffer.wrap(t.data());
            };
        }

        MoeFeedForward load(NDManager m) {
            return MoeFeedForward.load(m, source(), 0, config, moe);
        }
    }

    static double[][] inputs(int tokens, long seed) {
        Random r = new Random(seed);
        double[][] x = new double[tokens][HIDDEN];
        for (double[] row : x) {
            for (int i = 0; i < HIDDEN; i++) {
                row[i] = (float) (2 * r.nextGaussian()); // exactly representable as float
            }
        }
        return x;
    }

    static NDArray toArray(NDManager m, double[][] x) {
        float[] flat = new float[x.length * HIDDEN];
        for (int t = 0; t < x.length; t++) {
            for (int i = 0; i < HIDDEN; i++) {
                flat[t * HIDDEN + i] = (float) x[t][i];
            }
        }
        return m.create(flat, new Shape(x.length, HIDDEN));
    }

    @ParameterizedTest(name = "S{1}A{2}E{0}, m={3}, {4} tokens")
    @CsvSource({
        "8, 2, 2, 4, 9",  // the paper's S2A2E8 shape
        "7, 0, 1, 5, 9",  // no shared expert, one active, N_r = 7
        "6, 1, 3, 3, 1",  // one token, N_r = 5
        "5, 2, 3, 4, 6",  // every routed expert active
        "12, 1, 4, 2, 17"})
    void matchesTheDoublePrecisionFormula(int experts, int shared, int active, int m, int tokens) {
        for (GroupedExperts.Strategy strategy : GroupedExperts.Strategy.values()) {
            matchesTheDoublePrecisionFormula(experts, shared, active, m, tokens, strategy);
        }
    }

    private static void matchesTheDoublePrecisionFormula(int experts, int shared, int active, int m, int tokens,
                                                         GroupedExperts.Strategy strategy) {
        Fixture f = Fixture.of(experts, shared, active, m, 31L * experts + shared);
        double[][] x = inputs(tokens, experts + 100L * active);
        try (NDManager manager = NDManager.newBaseManager(); MoeFeedForward ffn = f.load(manager)) {
            float[] got;
            try (NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                NDArray out = ffn.forward(toArray(manager, x), strategy);
                assertEquals(new Shape(tokens, HIDDEN), out.getShape());
                got = out.toFloatArray();
            }
            double maxDiff = 0;
            double maxRef = 0;
            for (int t = 0; t < tokens; t++) {
                double[] p = f.reference().probs(x[t]);
                assertTrue(f.reference().margin(p) > 1e-5, "token " + t + ": selection too close to call");
                double[] want = f.reference().forward(x[t]);
                for (int i = 0; i < HIDDEN; i++) {
                    maxDiff = Math.max(maxDiff, Math.abs(got[t * HIDDEN + i] - want[i]));
                    maxRef = Math.max(maxRef, Math.abs(want[i]));
                }
            }
            assertTrue(maxDiff / maxRef < 1e-5, strategy + ": relative error " + maxDiff / maxRef);
        }
    }

    @Test
    void routingMatchesTheReferenceSelectionAndGates() {
        Fixture f = Fixture.of(9, 1, 3, 2, 5);
        double[][] x = inputs(11, 6);
        try (NDManager manager = NDManager.newBaseManager(); MoeFeedForward ffn = f.load(manager)) {
            Routing r = ffn.route(toArray(manager, x));
            float[] u = f.tensors().get(MoeWeightNames.routerScale(0)).data();
            for (int t = 0; t < x.length; t++) {
                double[] p = f.reference().probs(x[t]);
                int[] want = f.reference().select(p);
                for (int k = 0; k < want.length; k++) {
                    assertEquals(want[k], r.expert(t, k), "token " + t + " slot " + k);
                    assertEquals(1 + p[want[k]] * u[want[k]], r.gate(t, k), 1e-6);
                    assertEquals(p[want[k]], r.prob(t, want[k]), 1e-6);
                }
            }
        }
    }

    @Test
    void aLargeBiasAlwaysSelectsItsExpertAndNeverChangesTheWeights() {
        Fixture f = Fixture.of(8, 2, 2, 3, 8);
        double[][] x = inputs(20, 9);
        try (NDManager manager = NDManager.newBaseManager(); MoeFeedForward ffn = f.load(manager)) {
            NDArray in = toArray(manager, x);
            Routing before = ffn.route(in);
            float[] bias = ffn.bias();
            bias[4] = 10f;
            ffn.setBias(bias);
            Routing after = ffn.route(in);
            for (int t = 0; t < x.length; t++) {
                assertEquals(4, after.expert(t, 0), "token " + t);
                for (int k = 0; k < 2; k++) {
                    // g = 1 + s'·u does not depend on b: same expert, same weight
                    int j = after.expert(t, k);
                    assertEquals(1 + before.prob(t, j) * ffn.scale()[j], after.gate(t, k), 0f);
                }
            }
            assertEquals(x.length, after.rows(4).length);
        }
    }

    @Test
    void tokenCountersCountEverySelectionAndReset() {
        Fixture f = Fixture.of(7, 1, 2, 2, 10);
        try (NDManager manager = NDManager.newBaseManager(); MoeFeedForward ffn = f.load(manager)) {
            NDArray a = toArray(manager, inputs(13, 1));
            NDArray b = toArray(manager, inputs(5, 2));
            long[] expected = new long[6];
            for (NDArray in : new NDArray[] {a, b}) {
                try (NDScope scope = new NDScope()) {
                    scope.suppressNotUsedWarning();
                    ffn.forward(in);
                }
                long[] step = ffn.route(in).loads();
                for (int j = 0; j < 6; j++) {
                    expected[j] += 2 * step[j]; // forward and route both count
                }
            }
            assertArrayEquals(expected, ffn.loads());
            assertEquals(2 * (13 + 5) * 2, LongStream.of(ffn.loads()).sum());
            ffn.resetLoads();
            assertArrayEquals(new long[6], ffn.loads());
        }
    }

    @Test
    void sharedIsZeroWithoutASharedExpertAndExpertSplitsTheForward() {
        Fixture f = Fixture.of(4, 0, 2, 3, 12);
        double[][] x = inputs(5, 13);
        try (NDManager manager = NDManager.newBaseManager(); MoeFeedForward ffn = f.load(manager)) {
            NDArray in = toArray(manager, x);
            assertEquals(0f, ffn.shared(in).abs().sum().getFloat());
            // the distributed split: route, run each expert on its rows, combine
            Routing r = ffn.route(in);
            NDArray[] outs = new NDArray[4];
            for (int j = 0; j < 4; j++) {
                if (r.rows(j).length > 0) {
                    long[] rows = Arrays.stream(r.rows(j)).asLongStream().toArray();
                    outs[j] = ffn.expert(j, in.get(new ai.djl.ndarray.index.NDIndex("{}", manager.create(rows))));
                }
            }
            assertClose(ffn.combine(r, outs).toFloatArray(), ffn.forward(in).toFloatArray(), F32_TOLERANCE);
        }
    }

    @Test
    void releasingTheRoutedExpertsKeepsRouterSharedAndCombine() {
        Fixture f = Fixture.of(5, 1, 2, 3, 14);
        double[][] x = inputs(6, 15);
        try (NDManager manager = NDManager.newBaseManager(); MoeFeedForward ffn = f.load(manager)) {
            NDArray in = toArray(manager, x);
            float[] want = ffn.forward(in).toFloatArray();
            Routing before = ffn.route(in);
            NDArray[] outs = new NDArray[4];
            for (int j = 0; j < 4; j++) {
                if (before.rows(j).length > 0) {
                    long[] rows = Arrays.stream(before.rows(j)).asLongStream().toArray();
                    outs[j] = ffn.expert(j, in.get(new ai.djl.ndarray.index.NDIndex("{}", manager.create(rows))));
                }
            }
            ffn.releaseRoutedExperts();
            ffn.releaseRoutedExperts(); // idempotent
            Routing after = ffn.route(in);
            assertArrayEquals(before.probs(), after.probs(), 0f);
            assertClose(want, ffn.shared(in).add(ffn.combine(after, outs)).toFloatArray(), F32_TOLERANCE);
            org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> ffn.forward(in));
        }
    }

    /** Every |want − got| within {@code tolerance} × max |want|. */
    static void assertClose(float[] want, float[] got, double tolerance) {
        assertEquals(want.length, got.length);
        double maxDiff = 0;
        double maxRef = 0;
        for (int i = 0; i < want.length; i++) {
            maxDiff = Math.max(maxDiff, Math.abs(want[i] - got[i]));
            maxRef = Math.max(maxRef, Math.abs(want[i]));
        }
        assertTrue(maxRef > 0, "reference output is all zeros");
        assertTrue(maxDiff <= tolerance * maxRef, "max difference " + maxDiff + " exceeds " + tolerance + " × " + maxRef);
    }

    /**
     * The previous in-process forward, kept here as the yardstick: a gather and a separate-weight
     * SwiGLU ({@link Ops#swiglu}) per selected expert, the shared expert likewise, then
     * {@link MoeFeedForward#combine}.
     */
    static float[] perExpert(NDManager m, Fixture f, WeightKernels kernels, MoeFeedForward ffn, NDArray in) {
        TensorSource src = f.source();
        int d = HIDDEN;
        int size = f.moe().expertSize();
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            Routing r = ffn.route(in);
            NDArray[] outs = new NDArray[f.moe().routed()];
            for (int j = 0; j < outs.length; j++) {
                if (r.rows(j).length > 0) {
                    long[] rows = Arrays.stream(r.rows(j)).asLongStream().toArray();
                    outs[j] = Ops.swiglu(in.get(new NDIndex("{}", m.create(rows))),
                            weightT(m, kernels, src, MoeWeightNames.expert(0, j, MoeWeightNames.GATE), size, d),
                            weightT(m, kernels, src, MoeWeightNames.expert(0, j, MoeWeightNames.UP), size, d),
                            weightT(m, kernels, src, MoeWeightNames.expert(0, j, MoeWeightNames.DOWN), d, size),
                            kernels);
                }
            }
            NDArray routed = ffn.combine(r, outs);
            if (f.moe().shared() > 0) {
                int s = f.moe().sharedSize();
                routed = Ops.swiglu(in, weightT(m, kernels, src, MoeWeightNames.shared(0, MoeWeightNames.GATE), s, d),
                        weightT(m, kernels, src, MoeWeightNames.shared(0, MoeWeightNames.UP), s, d),
                        weightT(m, kernels, src, MoeWeightNames.shared(0, MoeWeightNames.DOWN), d, s), kernels)
                        .add(routed);
            }
            return routed.toFloatArray();
        }
    }

    private static NDArray weightT(NDManager m, WeightKernels kernels, TensorSource src, String name, long... shape) {
        return Tensors.transposedView(kernels.load(m, src, name, shape));
    }

    @ParameterizedTest(name = "{0}, {1} tokens")
    @CsvSource({"F32, 1", "F32, 3", "F32, 40", "BF16, 1", "BF16, 3", "BF16, 40", "F16, 5"})
    void groupedExpertsMatchThePerExpertPathInEachDtype(DType dtype, int tokens) {
        Fixture f = Fixture.of(10, 2, 3, 4, 77);
        WeightKernels kernels = WeightKernels.of(dtype);
        double tolerance = dtype == DType.F32 ? F32_TOLERANCE : BF16_TOLERANCE;
        try (NDManager manager = NDManager.newBaseManager();
             MoeFeedForward ffn = MoeFeedForward.load(manager, f.source(), 0, f.config(), f.moe(), true, kernels)) {
            NDArray in = toArray(manager, inputs(tokens, tokens));
            float[] want = perExpert(manager, f, kernels, ffn, in);
            for (GroupedExperts.Strategy s : GroupedExperts.Strategy.values()) {
                try (NDScope scope = new NDScope()) {
                    scope.suppressNotUsedWarning();
                    assertClose(want, ffn.forward(in, s).toFloatArray(), tolerance);
                }
            }
        }
    }

    /**
     * The layer script's carved block computes residual + the Java path's forward, with every
     * strategy and both combines (up to 8 tokens a gate matrix, beyond a gather), with and
     * without a shared expert, in each dtype.
     */
    @ParameterizedTest(name = "{0}, {1} tokens, {2} shared")
    @CsvSource({"F32, 1, 2", "F32, 3, 2", "F32, 40, 2", "F32, 5, 0", "F32, 12, 0", "BF16, 1, 2", "BF16, 40, 2",
        "F16, 5, 2"})
    void theScriptedBlockEqualsTheJavaPath(DType dtype, int tokens, int shared) {
        Fixture f = Fixture.of(10, shared, 3, 4, 78);
        WeightKernels kernels = WeightKernels.of(dtype);
        double tolerance = dtype == DType.F32 ? F32_TOLERANCE : BF16_TOLERANCE;
        // the default script, and one that runs the shared expert on a second engine thread beside the routed ones
        List<LayerScript> scripts = List.of(LayerScript.of(f.config(), dtype), LayerScript.of(f.config(), dtype, 0));
        int threads = JniUtils.getNumThreads();
        JniUtils.setNumThreads(2);
        try (NDManager manager = NDManager.newBaseManager();
             MoeFeedForward ffn = MoeFeedForward.load(manager, f.source(), 0, f.config(), f.moe(), true, kernels)) {
            NDArray in = toArray(manager, inputs(tokens, tokens + 100));
            NDArray residual = toArray(manager, inputs(tokens, tokens + 200));
            for (LayerScript script : scripts) {
                for (GroupedExperts.Strategy s : GroupedExperts.Strategy.values()) {
                    try (NDScope scope = new NDScope()) {
                        scope.suppressNotUsedWarning();
                        float[] want = residual.add(ffn.forward(in, s)).toFloatArray();
                        assertClose(want, ffn.addTo(residual, in, script, s).toFloatArray(), tolerance);
                    }
                }
            }
        } finally {
            JniUtils.setNumThreads(threads);
        }
    }

    @Test
    void batchesAllExpertsOnlyWhenLittleWeightIsReadInVainAndPaddingIsCheap() {
        // small experts, every one used, few rows each: one product over all
        assertTrue(GroupedExperts.batched(0, 14, 4, 32));
        // small experts, most unused (batch 1 of the shipped model): the used ones only
        assertFalse(GroupedExperts.batched(12 * 196_608L, 14, 1, 2));
        // small experts, about half unused (batch 4): one product, the bytes read in vain are few
        assertTrue(GroupedExperts.batched(8 * 196_608L, 14, 2, 8));
        // large experts (a 7B model's), two unused: only the used ones
        assertFalse(GroupedExperts.batched(2 * 33_816_576L, 14, 4, 32));
        // every expert used but one takes most rows (a skewed prefill): padding would multiply the work
        assertFalse(GroupedExperts.batched(0, 14, 200, 256));
        assertTrue(GroupedExperts.batched(0, 14, 30, 256));
    }
}
