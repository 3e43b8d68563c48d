package dev.cmoe.experts.cluster;

import java.util.Objects;

/**
 * How one node secures its cluster, as the node commands take it: the transport's key material
 * (who may connect at all) and the cluster's secret (which members are given experts).
 *
 * @param tls Artery over TLS with mutual authentication; null = plain TCP (a single trusted host)
 * @param secret checked before a device is given experts; {@link ClusterSecret#OPEN} = not checked
 */
public record ClusterSecurity(ClusterTls tls, ClusterSecret secret) {
    /** Plain TCP, every device accepted: tests and a cluster inside one trusted host. */
    public static final ClusterSecurity NONE = new ClusterSecurity(null, ClusterSecret.OPEN);

    public ClusterSecurity {
        Objects.requireNonNull(secret, "secret (ClusterSecret.OPEN for none)");
    }

    /** What is missing for a cluster that strangers on its network cannot join or feed, or "" when nothing is. */
    public String weakness() {
        if (tls == null && secret.isOpen()) {
            return "the cluster port is plain TCP and devices are not checked: anyone who reaches it can join and be "
                    + "given experts (give --cluster-key-store, --cluster-trust-store and --cluster-secret-file)";
        }
        if (tls == null) {
            return "the cluster port is plain TCP: routed hidden states cross the network in clear (give "
                    + "--cluster-key-store and --cluster-trust-store)";
        }
        if (secret.isOpen()) {
            return "devices are not checked: any holder of a trusted certificate is given experts (give "
                    + "--cluster-secret-file)";
        }
        return "";
    }
}
