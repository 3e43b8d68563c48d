package dev.cmoe.experts.testing;

import dev.cmoe.experts.cluster.ClusterTls;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Throwaway TLS key material for cluster tests, made by the JDK's keytool in a temp directory (no
 * private key is committed): a self-signed identity per name, and trust stores over chosen identities.
 */
public final class TestKeyStores {
    /** The password of every store made here: test-only material. */
    public static final String PASSWORD = "test-only-password";

    private final Path dir;

    public TestKeyStores(Path dir) {
        this.dir = dir;
    }

    /** A PKCS#12 key store holding a fresh EC key and self-signed certificate for {@code name}. */
    public Path identity(String name) {
        Path store = dir.resolve(name + ".p12");
        keytool("-genkeypair", "-alias", name, "-keyalg", "EC", "-groupname", "secp256r1", "-dname",
                "CN=" + name, "-validity", "2", "-storetype", "PKCS12", "-keystore", store.toString(),
                "-storepass", PASSWORD, "-keypass", PASSWORD);
        return store;
    }

    /** A PKCS#12 trust store of the certificates of {@code identities}. */
    public Path trusting(String name, Path... identities) {
        Path store = dir.resolve(name + ".p12");
        for (Path id : identities) {
            Path cert = dir.resolve(id.getFileName() + ".crt");
            String alias = id.getFileName().toString().replace(".p12", "");
            keytool("-exportcert", "-rfc", "-alias", alias, "-keystore", id.toString(), "-storepass", PASSWORD,
                    "-file", cert.toString());
            keytool("-importcert", "-noprompt", "-alias", alias, "-file", cert.toString(), "-storetype", "PKCS12",
                    "-keystore", store.toString(), "-storepass", PASSWORD);
        }
        return store;
    }

    /** The password written to a file, as the commands take it. */
    public Path passwordFile() {
        Path f = dir.resolve("store-password");
        try {
            Files.writeString(f, PASSWORD + "\n", StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
        return f;
    }

    /** A node's TLS settings: its identity, trusting {@code trust}. */
    public static ClusterTls tls(Path identity, Path trust) {
        return new ClusterTls(identity, PASSWORD, trust, PASSWORD);
    }

    private static void keytool(String... args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "keytool").toString());
        cmd.addAll(List.of(args));
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
                p.destroyForcibly();
                throw new IllegalStateException("keytool " + String.join(" ", args) + " failed: " + out);
            }
        } catch (IOException e) {
            throw new IllegalStateException("cannot run keytool: " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
