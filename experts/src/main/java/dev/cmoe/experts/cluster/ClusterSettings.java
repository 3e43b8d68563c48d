package dev.cmoe.experts.cluster;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import dev.cmoe.model.safetensors.DType;
import java.util.List;
import java.util.Map;

/**
 * Where one node of a CMoE cluster listens, whom it joins, what roles it has, and how large its
 * frames are: turned into the Pekko configuration of that node's actor system (over
 * {@code cmoe-cluster.conf}, Artery TCP — or TLS with {@link ClusterTls} — and the split-brain resolver).
 *
 * @param host canonical hostname (or IP) other nodes reach this one at; also the bind address
 * @param port Artery TCP port; 0 picks a free one (fine for workers, not for a seed)
 * @param seeds {@code HOST:PORT} of the seed nodes (the head)
 * @param roles {@link #ROLE_HEAD} and/or {@link #ROLE_WORKER}
 * @param maxFrameBytes Artery's maximum-frame-size; see {@link #frameBytesFor}
 * @param tls the node's key material for Artery over TLS with mutual authentication; null = plain TCP
 */
public record ClusterSettings(String host, int port, List<String> seeds, List<String> roles, int maxFrameBytes,
                              ClusterTls tls) {
    /** All nodes of one cluster share this actor system name. */
    public static final String SYSTEM_NAME = "cmoe";
    /** The node runs the gRPC front end, scheduler, attention, shared experts and routers. */
    public static final String ROLE_HEAD = "head";
    /** The node hosts routed experts on its devices. */
    public static final String ROLE_WORKER = "expert-worker";
    /** Artery's default frame size: what a cluster gets without sizing. */
    public static final int DEFAULT_FRAME_BYTES = 256 * 1024;
    private static final int FRAME_HEADROOM = 64 * 1024;
    private static final long BUFFER_POOL_BYTES = 256L * 1024 * 1024;

    public ClusterSettings {
        if (host == null || host.isBlank()) {
            throw new IllegalArgumentException("cluster host is empty");
        }
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("cluster port must be in [0, 65535], got " + port);
        }
        if (seeds.isEmpty()) {
            throw new IllegalArgumentException("a cluster node needs at least one seed (--cluster-seed HOST:PORT)");
        }
        seeds.forEach(ClusterSettings::hostPort);
        seeds = List.copyOf(seeds);
        roles = List.copyOf(roles);
        if (maxFrameBytes < DEFAULT_FRAME_BYTES) {
            throw new IllegalArgumentException("maximum frame size must be at least " + DEFAULT_FRAME_BYTES
                    + " bytes, got " + maxFrameBytes);
        }
    }

    /**
     * The frame size that carries one device's rows of the largest step: a step has at most
     * {@code maxBatchTokens} tokens, each sent to {@code active} experts, which may all be on one
     * device, in one message, as at most {@code hidden} float32 values a row; the answer has the
     * same size. Plus headroom for the envelope (paths, manifest) — and never below Artery's default.
     */
    public static int frameBytesFor(int maxBatchTokens, int active, int hidden) {
        long need = (long) maxBatchTokens * active * hidden * Float.BYTES + FRAME_HEADROOM;
        if (need > Integer.MAX_VALUE / 2) {
            throw new IllegalArgumentException("a batch of " + maxBatchTokens + " tokens × " + active
                    + " active experts × hidden " + hidden + " needs frames of " + need
                    + " bytes; lower --max-batch-tokens");
        }
        return (int) Math.max(DEFAULT_FRAME_BYTES, need);
    }

    /** The bytes of a tensor message of {@code rows} rows of {@code hidden} values of {@code dtype} for {@code experts} experts. */
    public static long tensorMessageBytes(int rows, int experts, int hidden, DType dtype) {
        return (long) rows * hidden * dtype.byteSize() + 8L * experts + TensorSerializer.TENSOR_MESSAGE_OVERHEAD;
    }

    /** Parses {@code HOST:PORT} (an IPv6 host in brackets), naming what is wrong. */
    public static Map.Entry<String, Integer> hostPort(String s) {
        int colon = s == null ? -1 : s.lastIndexOf(':');
        if (colon <= 0 || colon == s.length() - 1) {
            throw new IllegalArgumentException("expected HOST:PORT, got \"" + s + "\"");
        }
        String host = s.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port;
        try {
            port = Integer.parseInt(s.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("expected HOST:PORT, the port of \"" + s + "\" is not a number");
        }
        if (port <= 0 || port > 65535) {
            throw new IllegalArgumentException("port of \"" + s + "\" must be in [1, 65535]");
        }
        return Map.entry(host, port);
    }

    /** The node's configuration: these settings over cmoe-cluster.conf over the application's config. */
    public Config config() {
        List<String> seedAddresses = seeds.stream().map(s -> {
            Map.Entry<String, Integer> hp = hostPort(s);
            String h = hp.getKey().contains(":") ? "[" + hp.getKey() + "]" : hp.getKey();
            return "pekko://" + SYSTEM_NAME + "@" + h + ":" + hp.getValue();
        }).toList();
        // Buffers are pooled per frame size; cap what a full pool may hold.
        int pool = (int) Math.max(16, Math.min(128, BUFFER_POOL_BYTES / maxFrameBytes));
        Config node = ConfigFactory.empty()
                .withValue("pekko.remote.artery.canonical.hostname", ConfigValueFactory.fromAnyRef(host))
                .withValue("pekko.remote.artery.canonical.port", ConfigValueFactory.fromAnyRef(port))
                .withValue("pekko.remote.artery.advanced.maximum-frame-size",
                        ConfigValueFactory.fromAnyRef(maxFrameBytes + "b"))
                .withValue("pekko.remote.artery.advanced.buffer-pool-size", ConfigValueFactory.fromAnyRef(pool))
                .withValue("pekko.cluster.seed-nodes", ConfigValueFactory.fromIterable(seedAddresses))
                .withValue("pekko.cluster.roles", ConfigValueFactory.fromIterable(roles));
        if (tls != null) {
            node = tls.config().withFallback(node);
        }
        // System properties first, so an operator (or a test) can still override any of it with -D.
        return ConfigFactory.systemProperties().withFallback(node)
                .withFallback(ConfigFactory.parseResources(ClusterSettings.class.getClassLoader(), "cmoe-cluster.conf"))
                .withFallback(ConfigFactory.load()).resolve();
    }
}
