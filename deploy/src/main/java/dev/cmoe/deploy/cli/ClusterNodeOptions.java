package dev.cmoe.deploy.cli;

import dev.cmoe.experts.cluster.ClusterSecret;
import dev.cmoe.experts.cluster.ClusterSecurity;
import dev.cmoe.experts.cluster.ClusterTls;
import java.nio.file.Path;
import java.util.List;
import picocli.CommandLine.Option;

/**
 * The flags of a node joining a Pekko cluster, declared once as a picocli mixin for the commands
 * that start one: {@code serve --role head} and {@code worker}. Unset values stay null, so each
 * command applies its own defaults (a head binds its seed's address, a worker 127.0.0.1 and a
 * free port) and its own requirements, with errors naming the flag.
 */
final class ClusterNodeOptions {
    @Option(names = "--cluster-seed", paramLabel = "HOST:PORT", description = "The cluster's seed node: the head"
            + " itself (repeatable).")
    List<String> seeds;

    @Option(names = "--cluster-host", description = "Address other nodes reach this node at, also bound (head:"
            + " the seed's host; worker: 127.0.0.1).")
    String host;

    @Option(names = "--cluster-port", description = "This node's cluster (Artery TCP) port (head: the seed's port;"
            + " worker: 0, a free one).")
    Integer port;

    @Option(names = "--name", description = "Worker name of this node's devices, unique in the cluster: device ids"
            + " are NAME/DEVICE, e.g. worker-1/gpu:0 (head with --devices: 'head').")
    String name;

    @Option(names = "--devices", description = "Devices of this node that host experts: cpu, or gpu:0,gpu:1,..."
            + " (or cuda:0,cuda:1,...; one expert worker each). `serve` without --role head: one device, which"
            + " hosts all routed experts (default cpu).")
    String devices;

    @Option(names = "--memory-per-device", defaultValue = "0", description = "Bytes each of this node's devices"
            + " may spend on expert weights; 0 (default): a GPU 90% of its free memory at start, the CPU unlimited.")
    long memoryPerDevice;

    @Option(names = "--cluster-key-store", paramLabel = "FILE", description = "PKCS#12 (or .jks) key store of this"
            + " node's key and certificate: the cluster links run TLS with mutual authentication (Artery tls-tcp).")
    Path keyStore;

    @Option(names = "--cluster-key-store-password-file", paramLabel = "FILE",
            description = "File holding the password of --cluster-key-store and its key.")
    Path keyStorePasswordFile;

    @Option(names = "--cluster-trust-store", paramLabel = "FILE", description = "Key store of the certificates (or"
            + " their CA) of the nodes this one accepts.")
    Path trustStore;

    @Option(names = "--cluster-trust-store-password-file", paramLabel = "FILE",
            description = "File holding the password of --cluster-trust-store.")
    Path trustStorePasswordFile;

    @Option(names = "--cluster-secret-file", paramLabel = "FILE", description = "File holding the cluster's secret"
            + " (at least 16 bytes): the head gives experts only to devices that prove it, and downs the others.")
    Path secretFile;

    /** Whether any of the security flags was given (they need a cluster role). */
    boolean anySecurity() {
        return keyStore != null || keyStorePasswordFile != null || trustStore != null || trustStorePasswordFile != null
                || secretFile != null;
    }

    /** The node's TLS key material and secret from the flags; the four TLS flags go together. */
    ClusterSecurity security() {
        boolean anyTls = keyStore != null || keyStorePasswordFile != null || trustStore != null
                || trustStorePasswordFile != null;
        ClusterTls tls = null;
        if (anyTls) {
            required(keyStore, "--cluster-key-store", "TLS needs this node's key store");
            required(keyStorePasswordFile, "--cluster-key-store-password-file", "the key store's password");
            required(trustStore, "--cluster-trust-store", "TLS needs the certificates this node accepts");
            required(trustStorePasswordFile, "--cluster-trust-store-password-file", "the trust store's password");
            tls = ClusterTls.fromFiles(keyStore, keyStorePasswordFile, trustStore, trustStorePasswordFile);
        }
        return new ClusterSecurity(tls, secretFile == null ? ClusterSecret.OPEN : ClusterSecret.read(secretFile));
    }

    /** {@code value}, or an error naming the flag the command needs. */
    static <T> T required(T value, String flag, String why) {
        if (value == null || (value instanceof List<?> l && l.isEmpty())) {
            throw new IllegalArgumentException(flag + " is required: " + why);
        }
        return value;
    }
}
