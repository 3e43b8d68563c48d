package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.llama.DecoderWeights;
import dev.cmoe.model.llama.DenseFeedForward;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CarverTest {
    @TempDir
    Path tmp;

    static final int[] PROMPT = {0, 17, 250, 3, 99, 42, 7, 160};

    @Test
    void everyExpertActiveReproducesTheDenseModel() throws Exception {
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 1);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        RandomModel weights = RandomModel.of(TinyCheckpoint.llama(), 1);
        float[] want;
        try (LlamaModel model = LlamaModel.dense(weights.config(), weights)) {
            want = Fixtures.logits(model, PROMPT);
        }
        // S2A6E8: every neuron is in the shared expert or a selected one, each with weight 1
        try (CarvedModel carved = Carver.carveInMemory(dense, text, Fixtures.options(2, 6, 8), CarveListener.NONE);
             NDManager m = NDManager.newBaseManager()) {
            Random r = new Random(3);
            float[] x = new float[11 * 64];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) r.nextGaussian();
            }
            for (int l = 0; l < 2; l++) {
                assertInstanceOf(MoeFeedForward.class, carved.model().feedForward(l));
                try (NDScope scope = new NDScope();
                     DenseFeedForward ffn = DenseFeedForward.load(DecoderWeights.frozen(m, weights), l, 64, 96)) {
                    scope.suppressNotUsedWarning();
                    NDArray in = m.create(x, new Shape(11, 64));
                    float[] moe = carved.model().feedForward(l).forward(in).toFloatArray();
                    double err = Fixtures.relativeError(moe, ffn.forward(in).toFloatArray());
                    assertTrue(err < 1e-5, "layer " + l + " relative error " + err);
                }
            }
            double err = Fixtures.relativeError(Fixtures.logits(carved.model(), PROMPT), want);
            assertTrue(err < 1e-5, "logits relative error " + err);
            // the experts partition the neurons: shared + routed = every neuron once
            for (CarveReport.Layer layer : carved.report().layers()) {
                int[] all = IntStream.concat(Arrays.stream(layer.sharedNeurons()),
                        Arrays.stream(layer.experts()).flatMapToInt(Arrays::stream)).sorted().toArray();
                assertArrayEquals(IntStream.range(0, 96).toArray(), all);
                assertEquals(24, layer.sharedNeurons().length);
                assertArrayEquals(new int[] {12, 12, 12, 12, 12, 12}, layer.expertSizes());
            }
        }
    }

    @Test
    void savedModelLoadsWithIdenticalLogits() throws Exception {
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 2);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        Path out = tmp.resolve("carved");
        CarveOptions opts = Fixtures.options(1, 2, 6).withBalance(50, 1e-3).withMethod(CarveOptions.Method.OURS);
        float[] inMemory;
        CarveReport report;
        try (CarvedModel carved = Carver.carveInMemory(dense, text, opts, CarveListener.progressBars())) {
            inMemory = Fixtures.logits(carved.model(), PROMPT);
            report = carved.save(out, false);
        }
        try (ModelDir md = ModelDir.open(out)) {
            assertArrayEquals(inMemory, Fixtures.logits(md.model(), PROMPT), 0f);
            MoeConfig moe = md.moe().orElseThrow();
            assertEquals(6, moe.experts());
            assertEquals(1, moe.shared());
            assertEquals(2, moe.active());
            assertEquals(16, moe.expertSize());
            assertEquals("ours", moe.method());
            assertEquals(32, moe.details().getAsJsonObject("calibration").get("seqlen").getAsInt());
            assertEquals(10, moe.details().get("k_act").getAsInt());
            assertArrayEquals(report.layers().get(1).bias(),
                    ((MoeFeedForward) md.model().feedForward(1)).bias());
        }
        try (Checkpoint c = Checkpoint.open(out)) {
            assertFalse(c.has(MoeWeightNames.dense(0, MoeWeightNames.GATE)));
            assertTrue(c.has(MoeWeightNames.expert(1, 4, MoeWeightNames.DOWN)));
            assertTrue(c.has("model.layers.1.self_attn.q_proj.weight"));
        }
        for (String f : new String[] {"tokenizer.json", "tokenizer_config.json", CarveReport.FILE}) {
            assertTrue(Files.isRegularFile(out.resolve(f)), f);
        }
        CarveReport read = CarveReport.read(out);
        assertEquals(out.toString(), read.output());
        assertEquals(2, read.layers().size());
        assertEquals(128, read.calibrationTokens());
        assertArrayEquals(report.layers().get(0).rates(), read.layers().get(0).rates());
        assertArrayEquals(report.layers().get(0).loadsAfter(), read.layers().get(0).loadsAfter());
        assertTrue(read.seconds().save() >= 0 && read.seconds().total() > 0);
    }

    @Test
    void aHeapTooSmallForOneLayerFailsBeforeAnyWorkNamingTheSetting() throws Exception {
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 3, 1);
        ModelConfig config = ModelConfig.load(dense);
        CarveOptions opts = Fixtures.options(1, 1, 4).withCalibration(8, 64, 1);
        Carver.Recipe recipe = Carver.Recipe.of(opts.method());
        long need = Carver.heapNeeded(config, opts, recipe);
        long tensors = 12L * config.hiddenSize() * config.intermediateSize() + 3L * 4 * 8 * 64 * config.hiddenSize();
        assertEquals(tensors + Carver.HEAP_MARGIN, need);
        Carver.requireHeap(config, opts, recipe, need); // exactly enough passes
        IllegalStateException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> Carver.requireHeap(config, opts, recipe, need - 1));
        assertTrue(e.getMessage().contains("CMOE_JAVA_OPTS=-Xmx"), e.getMessage());
        assertTrue(e.getMessage().contains("512 calibration tokens"), e.getMessage());
        // clustering on profiles keeps the (intermediate, tokens) matrix as well
        Carver.Recipe profiles = Carver.Recipe.of(CarveOptions.Method.PROFILES);
        assertEquals(need + 4L * config.intermediateSize() * 8 * 64, Carver.heapNeeded(config, opts, profiles));
    }

    @Test
    void balancingMovesOnlyTheBiasAndEvensTheLoad() throws Exception {
        // one layer, so both carvings calibrate on the same inputs
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 3, 1);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        CarveOptions opts = Fixtures.options(0, 1, 8).withCalibration(8, 64, 1);
        try (CarvedModel plain = Carver.carveInMemory(dense, text, opts, CarveListener.NONE);
             CarvedModel balanced = Carver.carveInMemory(dense, text, opts.withBalance(300, 1e-3),
                     CarveListener.NONE)) {
            CarveReport.Layer before = plain.report().layers().get(0);
            CarveReport.Layer after = balanced.report().layers().get(0);
            assertTrue(before.imbalanceBefore() > 1.5, "the fixture should be skewed: " + before.imbalanceBefore());
            assertEquals(before.imbalanceBefore(), after.imbalanceBefore());
            assertTrue(after.imbalanceAfter() < after.imbalanceBefore(),
                    after.imbalanceBefore() + " -> " + after.imbalanceAfter());
            for (String name : plain.layerTensors(0).names()) {
                if (!name.equals(MoeWeightNames.routerBias(0))) {
                    assertArrayEquals(plain.layerTensors(0).read(name).array(),
                            balanced.layerTensors(0).read(name).array(), 0f, name);
                }
            }
            assertFalse(Arrays.equals(values(plain, MoeWeightNames.routerBias(0)),
                    values(balanced, MoeWeightNames.routerBias(0))));
        }
    }

    private static float[] values(CarvedModel c, String name) {
        return c.layerTensors(0).values(name);
    }

    @Test
    void carveWritesTheOutputAndRefusesToOverwriteWithoutForce() throws Exception {
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 4, 1);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        Path out = tmp.resolve("carved");
        int[] layersStarted = new int[1];
        CarveListener counting = new CarveListener() {
            @Override
            public void layerStarted(int layer, int layers, long work) {
                layersStarted[0]++;
            }
        };
        CarveReport r = Carver.carve(dense, text, out, Fixtures.options(2, 2, 8), counting);
        assertEquals(1, layersStarted[0]);
        assertEquals(out.toString(), r.output());
        assertTrue(Files.isRegularFile(out.resolve("model.safetensors")));
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> Carver.carve(dense, text, out, Fixtures.options(2, 2, 8), CarveListener.NONE));
        assertTrue(e.getMessage().contains("already exists"), e.getMessage());
        Carver.carve(dense, text, out, Fixtures.options(1, 1, 4).withForce(true), CarveListener.NONE);
        try (ModelDir md = ModelDir.open(out)) {
            assertEquals(4, md.moe().orElseThrow().experts());
        }
    }

    @Test
    void balanceWindowsMoveOnlyTheBias() throws Exception {
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 4);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        CarveOptions plain = Fixtures.options(1, 2, 6).withBalance(10, 1e-3).withMethod(CarveOptions.Method.OURS);
        CarveOptions wider = plain.withBalanceSamples(12);
        assertEquals(16, wider.drawnSamples());
        assertEquals(4, plain.withBalance(0, 1e-3).withBalanceSamples(12).drawnSamples(), "no balancing, no windows");
        CarveReport a;
        CarveReport b;
        try (CarvedModel c = Carver.carveInMemory(dense, text, plain, CarveListener.NONE)) {
            a = c.report();
        }
        try (CarvedModel c = Carver.carveInMemory(dense, text, wider, CarveListener.NONE)) {
            b = c.report();
            assertEquals(12, c.moe().details().getAsJsonObject("balance").get("samples").getAsInt());
        }
        // layer 0 sees the same calibration windows (the balance ones are drawn after them): same carving
        CarveReport.Layer la = a.layers().get(0);
        CarveReport.Layer lb = b.layers().get(0);
        assertArrayEquals(la.rates(), lb.rates());
        assertArrayEquals(la.sharedNeurons(), lb.sharedNeurons());
        assertArrayEquals(la.experts(), lb.experts());
        assertArrayEquals(la.representatives(), lb.representatives());
        assertEquals(a.calibrationTokens(), b.calibrationTokens());
        // the bias is fitted on all 16 windows: every one of their tokens picks the layer's budget of experts
        assertEquals((long) la.active() * 4 * 32, Arrays.stream(la.loadsAfter()).sum());
        assertEquals((long) lb.active() * 16 * 32, Arrays.stream(lb.loadsAfter()).sum());
        assertFalse(Arrays.equals(la.bias(), lb.bias()), "more tokens, another balance point");
    }

    @Test
    void carvingLayerByLayerWritesTheCheckpointThatTheInMemoryCarvingSaves() throws Exception {
        // a bf16 model of three layers, cut into several shards: the streamed carve must still be
        // byte for byte the in-memory one, with the index, the stored dtype and the dense tensors kept
        ModelConfig c = RandomModel.config("llama", 64, 96, 3, 8, 2, 300, false, null);
        Path dense = TinyCheckpoint.write(RandomModel.of(c, 5), tmp.resolve("dense"), DType.BF16);
        Path text = Fixtures.calibrationText(tmp.resolve("calib.txt"));
        CarveOptions opts = Fixtures.options(1, 2, 6).withBalance(20, 1e-3).withMethod(CarveOptions.Method.OURS);
        Path saved = tmp.resolve("saved");
        Path streamed = tmp.resolve("streamed");
        CarveReport kept;
        try (CarvedModel carved = Carver.carveInMemory(dense, text, opts, CarveListener.NONE)) {
            kept = carved.save(saved, false);
        }
        CarveReport report = Carver.carve(dense, LoadSpec.full(), text, streamed, opts, CarveListener.NONE, 60_000);
        assertTrue(Files.isRegularFile(streamed.resolve(Checkpoint.INDEX_FILE)));
        assertFalse(Files.exists(streamed.resolve(Checkpoint.SINGLE_FILE)));
        try (Checkpoint a = Checkpoint.open(saved); Checkpoint b = Checkpoint.open(streamed);
             Checkpoint d = Checkpoint.open(dense)) {
            assertEquals(DType.BF16, b.dtype());
            assertEquals(a.names(), b.names());
            for (String name : a.names()) {
                assertEquals(bytes(a, name), bytes(b, name), name);
                if (d.has(name)) {
                    assertEquals(bytes(d, name), bytes(b, name), name + " is copied as stored");
                }
            }
        }
        for (int l = 0; l < 3; l++) {
            assertArrayEquals(kept.layers().get(l).rates(), report.layers().get(l).rates());
            assertArrayEquals(kept.layers().get(l).bias(), report.layers().get(l).bias());
        }
        assertEquals("bfloat16", ModelConfig.load(streamed).torchDtype().orElseThrow());
        assertEquals(streamed.toString(), CarveReport.read(streamed).output());
        try (ModelDir a = ModelDir.open(saved); ModelDir b = ModelDir.open(streamed)) {
            assertArrayEquals(Fixtures.logits(a.model(), PROMPT), Fixtures.logits(b.model(), PROMPT), 0f);
        }
    }

    @Test
    void aFailedCarveLeavesNoOutputAndNoStagingBehind() throws Exception {
        Path dense = Fixtures.denseModel(tmp.resolve("dense"), 6, 1);
        Path text = Files.writeString(tmp.resolve("short.txt"), "too short");
        Path out = tmp.resolve("carved");
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> Carver.carve(dense, text, out, Fixtures.options(2, 2, 8), CarveListener.NONE));
        assertTrue(e.getMessage().contains("fewer than one window"), e.getMessage());
        try (var left = Files.list(tmp)) {
            assertEquals(java.util.List.of(), left.filter(p -> p.getFileName().toString().contains("carved")).toList());
        }
    }

    private static java.nio.ByteBuffer bytes(Checkpoint c, String name) {
        dev.cmoe.model.safetensors.RawTensor raw = c.readRaw(name);
        java.nio.ByteBuffer copy = java.nio.ByteBuffer.allocate(raw.bytes().remaining());
        copy.put(raw.bytes().duplicate()).flip();
        raw.release();
        return copy;
    }
}
