package dev.cmoe.server.cluster;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.cmoe.experts.cluster.ClusterSecurity;
import dev.cmoe.experts.cluster.DeviceSpec;
import dev.cmoe.experts.placement.DefaultPlacement;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.experts.placement.PlacementPolicy;
import java.util.List;
import java.util.Objects;

/**
 * How a head joins its cluster and places experts (the cluster flags of {@code cmoe serve}).
 *
 * @param host the head's canonical cluster address, also bound
 * @param port the head's Artery TCP port (the seed's, when the head is its own seed)
 * @param seeds {@code HOST:PORT} of the seed nodes
 * @param plan a placement plan to start from, or null for round-robin over the devices that join
 * @param policy re-places experts when rebalancing
 * @param minDevices devices to wait for before the first placement (without a plan)
 * @param localDevices devices this JVM also hosts experts on (the head is then an expert worker too); may be empty
 * @param localName the worker name of those devices
 * @param memoryPerDevice their memory budget in bytes; 0 = not limited
 * @param overrides configuration over the defaults ({@code cmoe.cluster.*}, {@code cmoe.router.*}), e.g. from tests
 * @param security the transport's key material and the secret devices must prove
 */
public record HeadOptions(String host, int port, List<String> seeds, PlacementPlan plan, PlacementPolicy policy,
                          int minDevices, List<DeviceSpec> localDevices, String localName, long memoryPerDevice,
                          Config overrides, ClusterSecurity security) {
    public HeadOptions(String host, int port, List<String> seeds, PlacementPlan plan, PlacementPolicy policy,
                       int minDevices, List<DeviceSpec> localDevices, String localName, long memoryPerDevice) {
        this(host, port, seeds, plan, policy, minDevices, localDevices, localName, memoryPerDevice,
                ConfigFactory.empty(), ClusterSecurity.NONE);
    }

    public HeadOptions {
        seeds = List.copyOf(seeds);
        localDevices = List.copyOf(localDevices);
        Objects.requireNonNull(security, "security (ClusterSecurity.NONE for none)");
        if (minDevices < 1) {
            throw new IllegalArgumentException("--min-devices must be ≥ 1, got " + minDevices);
        }
    }

    /** A head on {@code host:port} that is its own seed, with the default placement and no local devices. */
    public static HeadOptions seed(String host, int port) {
        return new HeadOptions(host, port, List.of(host + ":" + port), null, new DefaultPlacement(64), 1, List.of(),
                "head", 0);
    }

    public HeadOptions withPlan(PlacementPlan p) {
        return new HeadOptions(host, port, seeds, p, policy, minDevices, localDevices, localName, memoryPerDevice,
                overrides, security);
    }

    public HeadOptions withMinDevices(int n) {
        return new HeadOptions(host, port, seeds, plan, policy, n, localDevices, localName, memoryPerDevice,
                overrides, security);
    }

    public HeadOptions withConfig(Config c) {
        return new HeadOptions(host, port, seeds, plan, policy, minDevices, localDevices, localName, memoryPerDevice,
                c.withFallback(overrides), security);
    }

    public HeadOptions withSecurity(ClusterSecurity s) {
        return new HeadOptions(host, port, seeds, plan, policy, minDevices, localDevices, localName, memoryPerDevice,
                overrides, s);
    }
}
