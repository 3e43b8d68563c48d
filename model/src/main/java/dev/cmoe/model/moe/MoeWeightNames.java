package dev.cmoe.model.moe;

import dev.cmoe.model.arch.Layout;
import dev.cmoe.model.arch.TensorNames;
import dev.cmoe.model.config.ModelConfig;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Tensor names of a carved layer, written once so the carver, the loader and the expert servers
 * agree. Every name lives under {@code model.layers.{i}.mlp.}; m = expert_size, N_s = shared,
 * N_r = experts − shared, d = hidden size:
 *
 * <pre>
 * shared_expert.gate_proj.weight   (N_s·m, d)   absent when N_s = 0
 * shared_expert.up_proj.weight     (N_s·m, d)
 * shared_expert.down_proj.weight   (d, N_s·m)
 * experts.{j}.gate_proj.weight     (m, d)       routed expert j = 0 … N_r−1
 * experts.{j}.up_proj.weight       (m, d)
 * experts.{j}.down_proj.weight     (d, m)
 * router.classifier.weight         (N_r, d)     L2-normalised W_up row of expert j's representative
 * router.gate.weight               (N_r, d)     L2-normalised W_gate row of the representative
 * router.scale                     (N_r)        u: output weight g = 1 + s'·u
 * router.bias                      (N_r)        b: load-balancing bias, selection only
 * </pre>
 */
public final class MoeWeightNames {
    public static final String GATE = "gate_proj";
    public static final String UP = "up_proj";
    public static final String DOWN = "down_proj";

    private MoeWeightNames() {
    }

    /** {@code model.layers.{layer}.mlp.} */
    public static String mlp(int layer) {
        return TensorNames.layer(layer) + TensorNames.MLP;
    }

    /** The shared expert's {@code proj} ("gate_proj", "up_proj" or "down_proj") weight. */
    public static String shared(int layer, String proj) {
        return mlp(layer) + "shared_expert." + proj + ".weight";
    }

    /** Routed expert {@code expert}'s {@code proj} weight. */
    public static String expert(int layer, int expert, String proj) {
        return mlp(layer) + "experts." + expert + "." + proj + ".weight";
    }

    public static String routerClassifier(int layer) {
        return mlp(layer) + "router.classifier.weight";
    }

    public static String routerGate(int layer) {
        return mlp(layer) + "router.gate.weight";
    }

    public static String routerScale(int layer) {
        return mlp(layer) + "router.scale";
    }

    public static String routerBias(int layer) {
        return mlp(layer) + "router.bias";
    }

    /** Whether {@code name} is some layer's {@link #routerBias}. */
    public static boolean isRouterBias(String name) {
        return name.startsWith("model.layers.") && name.endsWith(".mlp.router.bias");
    }

    /** The dense FFN's weight that carving replaces, e.g. {@code dense(3, "gate_proj")}. */
    public static String dense(int layer, String proj) {
        return mlp(layer) + proj + ".weight";
    }

    /**
     * Every tensor of a carved checkpoint with its shape, in checkpoint order: the dense layout with
     * each layer's three FFN tensors replaced by the layer's MoE tensors.
     */
    public static Map<String, long[]> carvedLayout(ModelConfig c, MoeConfig moe) {
        Map<String, long[]> out = new LinkedHashMap<>();
        int layer = 0;
        for (Map.Entry<String, long[]> e : Layout.dense(c).entrySet()) {
            String name = e.getKey();
            if (!Layout.isFfn(name)) {
                out.put(name, e.getValue());
                continue;
            }
            if (!name.equals(TensorNames.weight(layer, TensorNames.GATE))) {
                continue; // up and down: the layer's MoE tensors already stand in for its FFN
            }
            out.putAll(layerLayout(c, moe, layer++));
        }
        return out;
    }

    /** Layer {@code l}'s MoE tensors with their shapes, in checkpoint order. */
    public static Map<String, long[]> layerLayout(ModelConfig c, MoeConfig moe, int l) {
        Map<String, long[]> out = new LinkedHashMap<>();
        int d = c.hiddenSize();
        int m = moe.expertSize();
        int s = moe.sharedSize();
        int nr = moe.routed();
        if (moe.shared() > 0) {
            out.put(shared(l, GATE), new long[] {s, d});
            out.put(shared(l, UP), new long[] {s, d});
            out.put(shared(l, DOWN), new long[] {d, s});
        }
        for (int j = 0; j < nr; j++) {
            out.put(expert(l, j, GATE), new long[] {m, d});
            out.put(expert(l, j, UP), new long[] {m, d});
            out.put(expert(l, j, DOWN), new long[] {d, m});
        }
        out.put(routerClassifier(l), new long[] {nr, d});
        out.put(routerGate(l), new long[] {nr, d});
        out.put(routerScale(l), new long[] {nr});
        out.put(routerBias(l), new long[] {nr});
        return out;
    }
}
