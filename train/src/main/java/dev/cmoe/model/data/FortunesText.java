package dev.cmoe.model.data;

import dev.cmoe.model.io.AtomicFile;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A held-out text of another domain than the Brown corpus, for evaluation only: the quotations,
 * jokes and definitions of Debian's {@code fortunes} package, pinned to one version and checked
 * against the archive's SHA-256. Neither training nor calibration ever reads it, so a carving's
 * perplexity on it shows how the method transfers beyond the corpus it was calibrated on.
 */
public final class FortunesText {
    /** The Debian binary package and its pinned version (bookworm). */
    public static final String PACKAGE = "fortunes";
    public static final String VERSION = "1:1.99.1-7.3";
    /** The SHA-256 of the pinned .deb, as the Debian archive's Packages index publishes it. */
    public static final String SHA256 = "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5";
    /** The .deb as it is cached in the data directory. */
    public static final String DEB = "fortunes_1.99.1-7.3_all.deb";
    /** The plain text written to the data directory: one fortune per line. */
    public static final String FILE = "fortunes.txt";

    private static final String DIR = "./usr/share/games/fortunes/";
    /** Drawings, not text. */
    private static final String EXCLUDED = "ascii-art";
    private static final long TIMEOUT_MINUTES = 5;

    private FortunesText() {}

    /**
     * Makes sure {@code dataDir/fortunes.txt} exists: from {@code dataDir/}{@value #DEB} when present,
     * or else downloaded with {@code apt-get download fortunes=1:1.99.1-7.3} (the Debian archive).
     *
     * @return the text file
     */
    public static Path fetch(Path dataDir) throws IOException {
        Path text = dataDir.resolve(FILE);
        Path cached = dataDir.resolve(DEB);
        if (Files.isRegularFile(text) && Files.isRegularFile(cached)) {
            return text;
        }
        Files.createDirectories(dataDir);
        if (!Files.isRegularFile(cached)) {
            Path work = Files.createTempDirectory(dataDir, ".fortunes-");
            try {
                Path deb = download(work);
                verify(deb);
                move(deb, cached);
            } finally {
                try (var files = Files.list(work)) {
                    for (Path p : files.toList()) {
                        Files.deleteIfExists(p);
                    }
                }
                Files.deleteIfExists(work);
            }
        }
        return fetch(dataDir, cached);
    }

    /** Writes {@code dataDir/fortunes.txt} from a local .deb, which must match {@link #SHA256}. */
    public static Path fetch(Path dataDir, Path deb) throws IOException {
        if (!Files.isRegularFile(deb)) {
            throw new CorpusFetchException("no " + DEB + " at " + deb + "; get it with `apt-get download "
                    + PACKAGE + "=" + VERSION + "`");
        }
        verify(deb);
        String text = toPlain(unpack(deb));
        Files.createDirectories(dataDir);
        Path out = dataDir.resolve(FILE);
        // through a sibling temp file renamed into place, with the umask's mode (a temp file's own is 0600)
        AtomicFile.write(out, text.getBytes(StandardCharsets.UTF_8));
        return out;
    }

    /**
     * The fortune files (path → content) as plain text: the files of the fortunes directory in name
     * order (the .dat indexes, the .u8 links and {@value #EXCLUDED} left out), every fortune (the
     * text between lines holding only {@code %}) on one line with its whitespace collapsed.
     */
    static String toPlain(Map<String, byte[]> files) throws CorpusFetchException {
        Map<String, byte[]> sorted = new TreeMap<>();
        for (Map.Entry<String, byte[]> e : files.entrySet()) {
            String path = e.getKey();
            if (path.startsWith(DIR)) {
                String name = path.substring(DIR.length());
                if (!name.isEmpty() && name.indexOf('.') < 0 && name.indexOf('/') < 0 && !name.equals(EXCLUDED)) {
                    sorted.put(name, e.getValue());
                }
            }
        }
        if (sorted.isEmpty()) {
            throw new CorpusFetchException("the package holds no fortune files under " + DIR
                    + "; it is not " + PACKAGE + "=" + VERSION);
        }
        StringBuilder out = new StringBuilder();
        for (byte[] content : sorted.values()) {
            List<String> chunk = new ArrayList<>();
            for (String line : (new String(content, StandardCharsets.UTF_8) + "\n%").split("\n", -1)) {
                if (line.strip().equals("%")) {
                    String fortune = String.join(" ", chunk).strip().replaceAll("\\s+", " ");
                    if (!fortune.isEmpty()) {
                        out.append(fortune).append('\n');
                    }
                    chunk.clear();
                } else {
                    chunk.add(line);
                }
            }
        }
        return out.toString();
    }

    private static Map<String, byte[]> unpack(Path deb) throws IOException {
        Process p;
        try {
            p = new ProcessBuilder("dpkg-deb", "--fsys-tarfile", deb.toString()).start();
        } catch (IOException e) {
            throw new CorpusFetchException("dpkg-deb not found on PATH (" + e.getMessage()
                    + "): unpacking a Debian package needs dpkg", e);
        }
        p.getOutputStream().close();
        CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> slurp(p.getErrorStream()));
        Map<String, byte[]> files;
        try (InputStream in = p.getInputStream()) {
            files = TarReader.readRegularFiles(in);
        }
        await(p, "dpkg-deb --fsys-tarfile " + deb, err);
        return files;
    }

    private static Path download(Path work) throws IOException {
        String spec = PACKAGE + "=" + VERSION;
        Process p;
        try {
            p = new ProcessBuilder("apt-get", "download", spec).directory(work.toFile()).start();
        } catch (IOException e) {
            throw new CorpusFetchException("apt-get not found on PATH (" + e.getMessage() + "); place " + DEB
                    + " in the data directory by hand", e);
        }
        p.getOutputStream().close();
        CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> slurp(p.getErrorStream()));
        slurp(p.getInputStream());
        await(p, "apt-get download " + spec, err);
        try (var files = Files.list(work)) {
            return files.filter(f -> f.getFileName().toString().endsWith(".deb")).findFirst()
                    .orElseThrow(() -> new CorpusFetchException("apt-get download " + spec + " wrote no .deb"));
        }
    }

    private static void await(Process p, String what, CompletableFuture<String> err) throws CorpusFetchException {
        try {
            if (!p.waitFor(TIMEOUT_MINUTES, TimeUnit.MINUTES)) {
                p.destroyForcibly();
                throw new CorpusFetchException(what + " timed out after " + TIMEOUT_MINUTES + " minutes");
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new CorpusFetchException("interrupted while running " + what, e);
        }
        if (p.exitValue() != 0) {
            throw new CorpusFetchException(what + " failed with exit code " + p.exitValue() + ": " + err.join().strip());
        }
    }

    /** Fails unless the file's SHA-256 is {@link #SHA256}. */
    static void verify(Path deb) throws IOException {
        String actual = sha256(deb);
        if (!actual.equals(SHA256)) {
            throw new CorpusFetchException("integrity mismatch for " + deb + ": expected SHA-256 " + SHA256
                    + " but the file has " + actual + "; it is corrupt or not " + PACKAGE + "=" + VERSION
                    + ", delete it and fetch again");
        }
    }

    static String sha256(Path file) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every Java runtime provides SHA-256", e);
        }
        try (InputStream in = Files.newInputStream(file)) {
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) {
                md.update(buf, 0, n);
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }

    private static String slurp(InputStream in) {
        try (in) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }

    private static void move(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
    }
}
