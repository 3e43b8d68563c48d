package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.llama.DecoderWeights;
import dev.cmoe.model.llama.DenseFeedForward;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.config.ModelConfig;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LayerBudgetsTest {
    @TempDir
    Path tmp;

    @Test
    void marginalAnalysisFindsTheBestSplitOfTheBudget() {
        Random r = new Random(11);
        for (int trial = 0; trial < 200; trial++) {
            int layers = 2 + r.nextInt(3);
            int routed = 2 + r.nextInt(5);
            double[][] errors = new double[layers][];
            for (int l = 0; l < layers; l++) {
                errors[l] = convexDecreasing(r, routed, Math.pow(10, 3 * r.nextDouble()));
            }
            int floor = 1 + r.nextInt(2);
            int total = floor * layers + r.nextInt((routed - floor) * layers + 1);
            int[] k = LayerBudgets.allocate(errors, total, floor);
            assertEquals(total, Arrays.stream(k).sum());
            assertTrue(Arrays.stream(k).allMatch(v -> v >= floor && v <= routed), Arrays.toString(k));
            assertEquals(bestByExhaustion(errors, total, floor), cost(errors, k), 1e-9,
                    "trial " + trial + ": " + Arrays.toString(k));
        }
    }

    @Test
    void theLayerWhoseErrorFallsMostGetsTheUnitsAndBadBudgetsAreRefused() {
        double[][] errors = {{9, 5, 2, 1, 0}, {0.9, 0.5, 0.2, 0.1, 0}, {0.8, 0.6, 0.4, 0.2, 0}};
        assertArrayEquals(new int[] {4, 1, 1}, LayerBudgets.allocate(errors, 6, 1));
        assertArrayEquals(new int[] {4, 2, 2}, LayerBudgets.allocate(errors, 8, 2));
        assertThrows(IllegalArgumentException.class, () -> LayerBudgets.allocate(errors, 2, 1));
        assertThrows(IllegalArgumentException.class, () -> LayerBudgets.allocate(errors, 13, 1));
    }

    /**
     * errors[k] is the carved layer's own forward with k routed experts per token against the dense
     * FFN: computed here by loading the layer again with N_k = k. With every expert selected the
     * carved layer is the dense one, so the last entry is zero.
     */
    @Test
    void errorsAreTheCarvedLayersOwnDistanceFromTheDenseFfnAtEachBudget() throws Exception {
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 4);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        RandomModel weights = RandomModel.of(dev.cmoe.model.testing.TinyCheckpoint.llama(), 4);
        CarveOptions opts = Fixtures.options(1, 2, 6).withMethod(CarveOptions.Method.OURS);
        try (CarvedModel carved = Carver.carveInMemory(dense, text, opts, CarveListener.NONE);
             NDManager m = NDManager.newBaseManager()) {
            ModelConfig config = carved.model().config();
            int d = config.hiddenSize();
            int tokens = 13;
            Random r = new Random(5);
            float[] x = gaussian(r, tokens * d);
            float[] residual = gaussian(r, tokens * d);
            double stream = 0;
            for (float v : residual) {
                stream += (double) v * v;
            }
            for (int l = 0; l < config.numLayers(); l++) {
                MoeFeedForward moe = (MoeFeedForward) carved.model().feedForward(l);
                try (DenseFeedForward ffn = DenseFeedForward.load(DecoderWeights.frozen(m, weights), l, d,
                        config.intermediateSize())) {
                    NDArray in = m.create(x, new Shape(tokens, d));
                    float[] want = ffn.forward(in).toFloatArray();
                    float[] probs = moe.route(in).probs();
                    double[] errors = LayerBudgets.errors(x, residual, probs, d, ffn, moe);
                    int routed = moe.config().routed();
                    assertEquals(routed + 1, errors.length);
                    for (int k = 1; k <= routed; k++) {
                        MoeConfig withK = new MoeConfig(moe.config().experts(), moe.config().shared(), k,
                                moe.config().expertSize(), MoeConfig.ANALYTICAL, "ours", null);
                        try (MoeFeedForward again = MoeFeedForward.load(m, carved.layerTensors(l), l, config, withK, true,
                                WeightKernels.f32())) {
                            again.setBias(moe.bias());
                            float[] got = again.forward(in).toFloatArray();
                            double e = 0;
                            for (int i = 0; i < want.length; i++) {
                                e += (got[i] - (double) want[i]) * (got[i] - want[i]);
                            }
                            assertEquals(e / stream, errors[k], 1e-4 * Math.max(errors[1], 1e-12),
                                    "layer " + l + ", k = " + k);
                        }
                    }
                    assertTrue(errors[routed] < 1e-9 * errors[0], Arrays.toString(errors));
                    assertTrue(errors[1] > errors[routed - 1], Arrays.toString(errors));
                }
            }
        }
    }

    /**
     * The carve gives the layers their budgets: the same total as N_k everywhere, none below
     * N_k − 1, the first layer (whose FFN writes most of the stream) more, and a saved model
     * whose every layer selects its own budget, with the in-memory model's logits.
     */
    @Test
    void theCarveSharesTheBudgetOutAndTheSavedModelSelectsIt() throws Exception {
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 6, 4);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        CarveOptions opts = Fixtures.options(1, 2, 6).withMethod(CarveOptions.Method.OURS).withBalance(10, 1e-3);
        float[] inMemory;
        CarveReport report;
        MoeConfig moe;
        try (CarvedModel carved = Carver.carveInMemory(dense, text, opts, CarveListener.NONE)) {
            moe = carved.moe();
            inMemory = Fixtures.logits(carved.model(), CarverTest.PROMPT);
            report = carved.save(tmp.resolve("carved"), false);
            for (int l = 0; l < 4; l++) {
                assertEquals(moe.active(l), ((MoeFeedForward) carved.model().feedForward(l)).config().active());
            }
        }
        assertTrue(moe.hasLayerBudgets(), "a uniform split on a model whose layers differ this much");
        assertEquals(2, moe.active());
        assertEquals(8, moe.activePerLayer().stream().mapToInt(Integer::intValue).sum());
        assertTrue(moe.activePerLayer().stream().allMatch(k -> k >= 1 && k <= 5), moe.activePerLayer().toString());
        assertTrue(moe.active(0) > 2, "layer 0 gets more: " + moe.activePerLayer());
        assertEquals("adaptive", moe.details().get("layer_budgets").getAsString());
        for (int l = 0; l < 4; l++) {
            CarveReport.Layer layer = report.layers().get(l);
            assertEquals(moe.active(l), layer.active());
            assertEquals(6, layer.budgetErrors().length);
            long picks = Arrays.stream(layer.loadsAfter()).sum();
            assertEquals((long) moe.active(l) * report.calibrationTokens(), picks, "layer " + l + "'s loads");
        }
        try (ModelDir md = ModelDir.open(tmp.resolve("carved"))) {
            assertEquals(moe.activePerLayer(), md.moe().orElseThrow().activePerLayer());
            for (int l = 0; l < 4; l++) {
                MoeFeedForward f = (MoeFeedForward) md.model().feedForward(l);
                assertEquals(moe.active(l), f.config().active());
                assertArrayEquals(report.layers().get(l).bias(), f.bias());
            }
            assertArrayEquals(inMemory, Fixtures.logits(md.model(), CarverTest.PROMPT), 0f);
        }
        // the yardstick keeps N_k everywhere, and so does ours when asked
        for (CarveOptions uniform : new CarveOptions[] {opts.withMethod(CarveOptions.Method.CMOE),
            opts.withBudgets(CarveOptions.Budgets.UNIFORM)}) {
            try (CarvedModel carved = Carver.carveInMemory(dense, text, uniform, CarveListener.NONE)) {
                assertFalse(carved.moe().hasLayerBudgets(), uniform.method() + " " + uniform.budgets());
                assertEquals(null, carved.report().layers().get(0).budgetErrors());
                assertEquals(2, carved.report().layers().get(3).active());
            }
        }
    }

    @Test
    void withBudgetsEveryLayerIsBalancedOnTheStreamItServesBehind() throws Exception {
        // Layer l > 0 is first balanced behind layers at the uniform N_k; with budgets it serves
        // behind layers selecting their own numbers of experts. The loads a layer's report gives
        // after balancing must be those of the calibration windows run through the final model.
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 6, 4);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        CarveOptions opts = Fixtures.options(1, 2, 6).withMethod(CarveOptions.Method.OURS).withBalance(10, 1e-3)
                .withBalanceSamples(4);
        Carver.Recipe ours = Carver.Recipe.of(opts);
        int mismatchedBefore = 0;
        for (boolean restream : new boolean[] {false, true}) {
            try (CarvedModel carved = Carver.carveInMemory(dense, text, opts, ours.withRestream(restream),
                    CarveListener.NONE)) {
                assertTrue(carved.moe().hasLayerBudgets(), carved.moe().activePerLayer().toString());
                long[][] served = calibrationLoads(carved, text, opts);
                int mismatched = 0;
                for (int l = 0; l < served.length; l++) {
                    long[] reported = carved.report().layers().get(l).loadsAfter();
                    assertEquals((long) carved.moe().active(l) * opts.drawnSamples() * 32,
                            Arrays.stream(reported).sum(), "layer " + l + " counts every balance token");
                    if (restream) {
                        assertArrayEquals(reported, served[l], "layer " + l + ": balanced on the stream it serves");
                    } else if (!Arrays.equals(reported, served[l])) {
                        mismatched++;
                    }
                }
                assertArrayEquals(carved.report().layers().get(0).loadsAfter(), served[0],
                        "layer 0's input never depends on a carving");
                mismatchedBefore = restream ? mismatchedBefore : mismatched;
                if (restream) {
                    // the carve that streams layer by layer loads each layer again for this pass
                    CarveReport streamed = Carver.carve(dense, LoadSpec.full(), text, tmp.resolve("streamed"), opts,
                            CarveListener.NONE);
                    try (Checkpoint saved = Checkpoint.open(tmp.resolve("streamed"))) {
                        for (int l = 0; l < served.length; l++) {
                            float[] bias = carved.report().layers().get(l).bias();
                            assertArrayEquals(bias, streamed.layers().get(l).bias(), "layer " + l);
                            assertArrayEquals(bias, carved.layerTensors(l).values(MoeWeightNames.routerBias(l)),
                                    "layer " + l + "'s tensors in memory, which a save writes");
                            assertArrayEquals(bias, floats(saved.readF32(MoeWeightNames.routerBias(l))),
                                    "layer " + l + "'s bias in the streamed checkpoint");
                        }
                    }
                }
            }
        }
        assertTrue(mismatchedBefore > 0, "without the second pass some layer was balanced on a stream it never sees");
    }

    private static float[] floats(java.nio.FloatBuffer b) {
        float[] v = new float[b.remaining()];
        b.get(v);
        return v;
    }

    /** Tokens per expert of every layer while the carve's calibration windows run through the carved model. */
    private static long[][] calibrationLoads(CarvedModel carved, Path text, CarveOptions opts) {
        LlamaModel model = carved.model();
        int layers = model.config().numLayers();
        for (int l = 0; l < layers; l++) {
            ((MoeFeedForward) model.feedForward(l)).resetLoads();
        }
        int[][] windows = Calibration.windows(carved.tokenizer(), text, opts.drawnSamples(), 32, opts.seed());
        Calibration.ResidualStream stream = new Calibration.ResidualStream(model, windows);
        for (int l = 0; l < layers; l++) {
            stream.advance(done -> { });
        }
        long[][] loads = new long[layers][];
        for (int l = 0; l < layers; l++) {
            loads[l] = ((MoeFeedForward) model.feedForward(l)).loads();
        }
        return loads;
    }

    private static float[] gaussian(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    /** errors[0..routed], falling with shrinking steps to 0. */
    private static double[] convexDecreasing(Random r, int routed, double scale) {
        double[] steps = new double[routed];
        for (int i = 0; i < routed; i++) {
            steps[i] = r.nextDouble() * scale;
        }
        Arrays.sort(steps); // ascending; the first unit gains the most
        double[] e = new double[routed + 1];
        for (int k = routed - 1; k >= 0; k--) {
            e[k] = e[k + 1] + steps[routed - 1 - k];
        }
        return e;
    }

    private static double cost(double[][] errors, int[] k) {
        double c = 0;
        for (int l = 0; l < k.length; l++) {
            c += errors[l][k[l]];
        }
        return c;
    }

    private static double bestByExhaustion(double[][] errors, int total, int floor) {
        return best(errors, 0, total, floor);
    }

    private static double best(double[][] errors, int l, int left, int floor) {
        if (l == errors.length) {
            return left == 0 ? 0 : Double.POSITIVE_INFINITY;
        }
        double b = Double.POSITIVE_INFINITY;
        for (int k = floor; k < errors[l].length && k <= left; k++) {
            b = Math.min(b, errors[l][k] + best(errors, l + 1, left - k, floor));
        }
        return b;
    }
}
