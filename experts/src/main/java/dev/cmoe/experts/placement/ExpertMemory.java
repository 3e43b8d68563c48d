package dev.cmoe.experts.placement;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.Checkpoint;
import java.nio.file.Path;

/**
 * What each routed expert costs a device: the bytes of its three weight matrices as an expert
 * actor holds them, in the dtype it computes in (the stored one unless {@code --dtype} says
 * otherwise), read from the safetensors headers without loading any data.
 *
 * @param layers decoder layers
 * @param experts routed experts per layer (N_r)
 * @param bytes (layers, experts) resident bytes of each expert
 */
public record ExpertMemory(int layers, int experts, long[][] bytes) {
    /** Every expert costing {@code each} bytes: for tests and what-if planning. */
    public static ExpertMemory uniform(int layers, int experts, long each) {
        long[][] bytes = new long[layers][experts];
        for (long[] row : bytes) {
            java.util.Arrays.fill(row, each);
        }
        return new ExpertMemory(layers, experts, bytes);
    }

    /** Reads the carved checkpoint in {@code model}, its experts held in the stored dtype. */
    public static ExpertMemory of(Path model) {
        return of(model, java.util.Optional.empty());
    }

    /**
     * Reads the carved checkpoint in {@code model}, its experts held in {@code dtype} (empty: the
     * stored one); a dense checkpoint is refused with a hint.
     */
    public static ExpertMemory of(Path model, java.util.Optional<dev.cmoe.model.safetensors.DType> dtype) {
        ModelConfig config = ModelConfig.load(model);
        MoeConfig moe = MoeConfig.of(config).orElseThrow(() -> new IllegalArgumentException(model
                + " is a dense checkpoint (config.json has no \"" + MoeConfig.KEY + "\" block): carve it first"
                + " with `cmoe carve`"));
        int layers = config.numLayers();
        int experts = moe.routed();
        long[][] bytes = new long[layers][experts];
        try (Checkpoint checkpoint = Checkpoint.open(model)) {
            for (int l = 0; l < layers; l++) {
                for (int e = 0; e < experts; e++) {
                    long numel = 0;
                    for (String proj : new String[] {MoeWeightNames.GATE, MoeWeightNames.UP, MoeWeightNames.DOWN}) {
                        String name = MoeWeightNames.expert(l, e, proj);
                        if (!checkpoint.has(name)) {
                            throw new IllegalArgumentException(model + ": carved checkpoint lacks tensor '" + name + "'");
                        }
                        numel += checkpoint.info(name).numel();
                    }
                    bytes[l][e] = numel * dtype.orElse(checkpoint.info(MoeWeightNames.expert(l, e,
                            MoeWeightNames.GATE)).dtype()).byteSize();
                }
            }
        }
        return new ExpertMemory(layers, experts, bytes);
    }

    /** Expert (layer, expert)'s bytes. */
    public long of(int layer, int expert) {
        return bytes[layer][expert];
    }

    /** All experts once. */
    public long total() {
        long sum = 0;
        for (long[] row : bytes) {
            for (long b : row) {
                sum += b;
            }
        }
        return sum;
    }
}
