package dev.cmoe.deploy.cli;

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
            + " (one expert worker each).")
    String devices;

    @Option(names = "--memory-per-device", defaultValue = "0", description = "Bytes each of this node's devices"
            + " may spend on expert weights; 0 = unlimited (default).")
    long memoryPerDevice;

    /** {@code value}, or an error naming the flag the command needs. */
    static <T> T required(T value, String flag, String why) {
        if (value == null || (value instanceof List<?> l && l.isEmpty())) {
            throw new IllegalArgumentException(flag + " is required: " + why);
        }
        return value;
    }
}
