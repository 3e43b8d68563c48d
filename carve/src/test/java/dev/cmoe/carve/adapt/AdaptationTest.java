package dev.cmoe.carve.adapt;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.carve.CarveListener;
import dev.cmoe.carve.CarveOptions;
import dev.cmoe.carve.CarveReport;
import dev.cmoe.carve.Carver;
import dev.cmoe.carve.report.CarvePlots;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.model.train.LoraSpec;
import dev.cmoe.model.train.TokenData;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The whole adaptation run on a tiny carved model: output format, report, resuming, refusals. */
class AdaptationTest {
    @TempDir
    static Path shared;
    static Path dense;
    static Path carved;
    static TokenData train;
    static TokenData validation;

    @TempDir
    Path tmp;

    @BeforeAll
    static void carveOnce() throws Exception {
        dense = TinyCheckpoint.write(RandomModel.of(TinyCheckpoint.llama(), 1), shared.resolve("dense"), DType.F32);
        Path text = TinyCheckpoint.calibrationText(shared.resolve("text.txt"));
        carved = shared.resolve("carved");
        CarvePlots.write(Carver.carve(dense, text, carved, CarveOptions.of(1, 2, 6).withCalibration(4, 32, 7),
                CarveListener.NONE), carved);
        try (TextTokenizer tok = TextTokenizer.load(carved)) {
            String[] lines = Files.readString(text, StandardCharsets.UTF_8).split("\n");
            List<int[]> a = new ArrayList<>();
            List<int[]> b = new ArrayList<>();
            for (int i = 0; i < lines.length; i++) {
                (i % 10 == 0 ? b : a).add(tok.encodeIds(lines[i], false));
            }
            train = TokenData.ofDocuments(a, tok.bosId(), tok.eosId());
            validation = TokenData.ofDocuments(b, tok.bosId(), tok.eosId());
        }
    }

    /** 8 windows of 24 tokens, batch 2: 4 steps; fast learning rates so a few steps show. */
    static AdaptOptions options() {
        return new AdaptOptions(8, 24, 1, 2, new LoraSpec(4, 8, 0.1), 1e-2, 1e-2, 1e-2, 1.0, 3, 4, 1, 2);
    }

    static AdaptReport adapt(Path out, AdaptOptions opts, java.util.function.BooleanSupplier stop) {
        return Adaptation.run(carved, train, validation, out, opts, stop, Adaptation.Listener.NONE);
    }

    @Test
    void writesALoadableCarvedModelWithItsHistory() throws Exception {
        Path out = tmp.resolve("adapted");
        AdaptOptions opts = new AdaptOptions(6, 1000, 1, 2, new LoraSpec(4, 8, 0.1), 1e-2, 1e-2, 1e-2, 1.0, 3, 2,
                1, 100);
        AdaptReport r = adapt(out, opts, () -> false);
        assertEquals(128, r.seqLen(), "--seqlen above the context is clamped to it");
        assertTrue(r.finished());
        assertEquals(3, r.steps());
        assertEquals(3, r.history().size());
        assertEquals(6L * 128, r.tokens());
        assertNotNull(r.before());
        assertNotNull(r.after());
        assertTrue(r.after().loss() < r.before().loss(), "validation loss " + r.before().loss() + " -> "
                + r.after().loss());
        try (Checkpoint in = Checkpoint.open(carved); Checkpoint adapted = Checkpoint.open(out)) {
            assertEquals(new ArrayList<>(in.names()), new ArrayList<>(adapted.names()), "same tensors, same order");
            float[] u = new float[5];
            adapted.readF32(MoeWeightNames.routerScale(1)).get(u);
            assertFalse(java.util.Arrays.equals(u, new float[5]), "u was trained and saved");
        }
        try (ModelDir md = ModelDir.open(out)) {
            assertTrue(md.moe().isPresent());
            assertTrue(md.moe().get().details().has(AdaptReport.KEY), "config.json notes the adaptation");
        }
        CarveReport carving = CarveReport.read(out); // the carving's own report survives
        assertEquals(2, carving.layers().size());
        AdaptReport saved = AdaptReport.read(out);
        assertEquals(r.history().size(), saved.history().size());
        assertEquals(r.history().get(2).loss(), saved.history().get(2).loss(), 0);
        assertTrue(Files.size(out.resolve(AdaptPlots.FILE)) > 1000);
        assertTrue(Files.exists(out.resolve("tokenizer.json")));
        assertTrue(Files.exists(out.resolve("loads-layer0.png")), "the carving's plots are kept");
        assertFalse(Files.exists(out.resolve(AdaptState.TENSORS)), "a finished run drops the optimizer state");
        long modified = Files.getLastModifiedTime(out.resolve(Checkpoint.SINGLE_FILE)).toMillis();
        AdaptReport again = adapt(out, opts, () -> false);
        assertEquals(r.history().size(), again.history().size(), "re-running a finished adaptation does nothing");
        assertEquals(modified, Files.getLastModifiedTime(out.resolve(Checkpoint.SINGLE_FILE)).toMillis());
    }

    @Test
    void aResumedRunEqualsAnUninterruptedOne() throws Exception {
        Path straight = tmp.resolve("straight");
        AdaptReport a = adapt(straight, options(), () -> false);
        Path resumed = tmp.resolve("resumed");
        AdaptReport first = adapt(resumed, options(), () -> true); // stops after its first step
        assertFalse(first.finished());
        assertEquals(1, first.steps());
        assertTrue(Files.exists(resumed.resolve(AdaptState.TENSORS)));
        try (ModelDir md = ModelDir.open(resumed)) {
            assertTrue(md.moe().isPresent(), "an interrupted run's checkpoint is a usable model");
        }
        AdaptReport b = adapt(resumed, options(), () -> false);
        assertTrue(b.finished());
        assertEquals(a.history().stream().map(AdaptReport.Entry::loss).toList(),
                b.history().stream().map(AdaptReport.Entry::loss).toList());
        try (Checkpoint x = Checkpoint.open(straight); Checkpoint y = Checkpoint.open(resumed)) {
            for (String name : x.names()) {
                float[] p = new float[x.readF32(name).remaining()];
                x.readF32(name).get(p);
                float[] q = new float[y.readF32(name).remaining()];
                y.readF32(name).get(q);
                assertArrayEquals(p, q, name);
            }
        }
    }

    @Test
    void refusesWhatItCannotAdapt() throws Exception {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Adaptation.run(dense, train, validation, tmp.resolve("o2"), options(), () -> false,
                        Adaptation.Listener.NONE));
        assertTrue(e.getMessage().contains("carve it first"), e.getMessage());
        Files.createDirectories(tmp.resolve("full"));
        Files.writeString(tmp.resolve("full/x.txt"), "x");
        e = assertThrows(IllegalArgumentException.class, () -> adapt(tmp.resolve("full"), options(), () -> false));
        assertTrue(e.getMessage().contains("holds no adaptation"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> adapt(carved, options(), () -> false));
        assertTrue(e.getMessage().contains("--out must differ"), e.getMessage());
        Path partial = tmp.resolve("partial");
        adapt(partial, options(), () -> true);
        e = assertThrows(IllegalArgumentException.class, () -> adapt(partial, options().withSeed(4), () -> false));
        assertTrue(e.getMessage().contains("other settings"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new AdaptOptions(0, 24, 1, 2, new LoraSpec(4, 8, 0),
                1e-2, 1e-2, 1e-2, 1.0, 3, 4, 1, 2));
        assertTrue(e.getMessage().contains("--samples"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new LoraSpec(0, 8, 0.1));
        assertTrue(e.getMessage().contains("rank"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new LoraSpec(8, 8, 1.0));
        assertTrue(e.getMessage().contains("dropout"), e.getMessage());
    }
}
