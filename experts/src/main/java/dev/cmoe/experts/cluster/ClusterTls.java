package dev.cmoe.experts.cluster;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.util.Collections;

/**
 * The key material that puts a node's Artery links under TLS with mutual authentication
 * (Pekko's {@code tls-tcp} transport): every node presents the certificate of its key store and
 * accepts only peers whose certificate its trust store vouches for, in both directions, so a node
 * without the cluster's certificate cannot even connect. Stores are PKCS#12 (or JKS) files; their
 * passwords are read from files, never taken on the command line.
 *
 * @param keyStore this node's private key and certificate chain
 * @param keyStorePassword the password of {@code keyStore} and of the key in it
 * @param trustStore the certificates (or their CA) of the nodes this one accepts
 * @param trustStorePassword the password of {@code trustStore}
 */
public record ClusterTls(Path keyStore, String keyStorePassword, Path trustStore, String trustStorePassword) {
    private static final String ENGINE = "pekko.remote.artery.ssl.config-ssl-engine.";

    public ClusterTls {
        check(keyStore, keyStorePassword, true);
        check(trustStore, trustStorePassword, false);
    }

    /** The stores with passwords read from files (a trailing newline is not part of a password). */
    public static ClusterTls fromFiles(Path keyStore, Path keyStorePasswordFile, Path trustStore,
                                       Path trustStorePasswordFile) {
        return new ClusterTls(keyStore, password(keyStorePasswordFile), trustStore, password(trustStorePasswordFile));
    }

    /** The transport settings of a node with this material (over the plain {@code tcp} of cmoe-cluster.conf). */
    public Config config() {
        return ConfigFactory.empty()
                .withValue("pekko.remote.artery.transport", ConfigValueFactory.fromAnyRef("tls-tcp"))
                .withValue(ENGINE + "key-store", ConfigValueFactory.fromAnyRef(keyStore.toAbsolutePath().toString()))
                .withValue(ENGINE + "key-store-password", ConfigValueFactory.fromAnyRef(keyStorePassword))
                .withValue(ENGINE + "key-password", ConfigValueFactory.fromAnyRef(keyStorePassword))
                .withValue(ENGINE + "trust-store",
                        ConfigValueFactory.fromAnyRef(trustStore.toAbsolutePath().toString()))
                .withValue(ENGINE + "trust-store-password", ConfigValueFactory.fromAnyRef(trustStorePassword))
                .withValue(ENGINE + "protocol", ConfigValueFactory.fromAnyRef("TLSv1.3"))
                .withValue(ENGINE + "require-mutual-authentication", ConfigValueFactory.fromAnyRef(true));
    }

    @Override
    public String toString() {
        return "ClusterTls[keyStore=" + keyStore + ", trustStore=" + trustStore + "]"; // never the passwords
    }

    private static String password(Path file) {
        try {
            String p = Files.readString(file, StandardCharsets.UTF_8);
            p = p.endsWith("\r\n") ? p.substring(0, p.length() - 2) : p.endsWith("\n") ? p.substring(0, p.length() - 1) : p;
            if (p.isEmpty()) {
                throw new IllegalArgumentException("the password file " + file + " is empty");
            }
            return p;
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read the password file " + file + ": " + e, e);
        }
    }

    /** Opens the store now, so a wrong path or password is reported at start, naming the file, not by Artery later. */
    private static void check(Path store, String password, boolean needsKey) {
        String what = needsKey ? "cluster key store" : "cluster trust store";
        if (store == null || password == null || password.isEmpty()) {
            throw new IllegalArgumentException("the " + what + " and its password are both required");
        }
        KeyStore ks;
        try (InputStream in = Files.newInputStream(store)) {
            ks = KeyStore.getInstance(store.toString().endsWith(".jks") ? "JKS" : "PKCS12");
            ks.load(in, password.toCharArray());
        } catch (IOException | GeneralSecurityException e) {
            throw new IllegalArgumentException("cannot open the " + what + " " + store
                    + " (wrong path, format or password?): " + e.getMessage(), e);
        }
        try {
            boolean hasKey = false;
            boolean hasCert = false;
            for (String alias : Collections.list(ks.aliases())) {
                hasKey |= ks.isKeyEntry(alias);
                hasCert |= ks.getCertificate(alias) != null;
            }
            if (needsKey && !hasKey) {
                throw new IllegalArgumentException("the " + what + " " + store + " holds no private key");
            }
            if (!hasCert) {
                throw new IllegalArgumentException("the " + what + " " + store + " holds no certificate");
            }
        } catch (GeneralSecurityException e) {
            throw new IllegalArgumentException("cannot read the " + what + " " + store + ": " + e.getMessage(), e);
        }
    }
}
