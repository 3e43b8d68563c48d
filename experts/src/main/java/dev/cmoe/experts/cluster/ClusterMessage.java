package dev.cmoe.experts.cluster;

/**
 * Marks the messages that cross nodes between the head and the expert workers, so that the
 * configuration binds exactly them to {@link TensorSerializer} (compact binary, never Java
 * serialization, never JSON).
 */
public interface ClusterMessage {
}
