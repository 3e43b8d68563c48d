package dev.cmoe.carve;

import dev.cmoe.model.moe.MoeWeightNames;

/** The tensors of one carved layer, cut from the dense weights by neuron index (no value changes). */
final class LayerTensors {
    private LayerTensors() {
    }

    /**
     * Puts layer {@code l}'s shared expert, routed experts and router (u = 0, b = 0) into {@code out};
     * the experts are cut from {@code ffn} when read, so {@code out} keeps {@code ffn}.
     */
    static void put(TensorMap out, int l, DenseFfn ffn, Clustering.Result c, RouterFit.Rows router) {
        int d = ffn.hidden();
        int[] shared = c.shared();
        if (shared.length > 0) {
            int s = shared.length;
            out.putCut(MoeWeightNames.shared(l, MoeWeightNames.GATE), () -> DenseFfn.rows(ffn.gate(), d, shared), s, d);
            out.putCut(MoeWeightNames.shared(l, MoeWeightNames.UP), () -> DenseFfn.rows(ffn.up(), d, shared), s, d);
            out.putCut(MoeWeightNames.shared(l, MoeWeightNames.DOWN), () -> ffn.downColumns(shared), d, s);
        }
        int nr = c.experts().length;
        for (int j = 0; j < nr; j++) {
            int[] e = c.experts()[j];
            out.putCut(MoeWeightNames.expert(l, j, MoeWeightNames.GATE), () -> DenseFfn.rows(ffn.gate(), d, e),
                    e.length, d);
            out.putCut(MoeWeightNames.expert(l, j, MoeWeightNames.UP), () -> DenseFfn.rows(ffn.up(), d, e),
                    e.length, d);
            out.putCut(MoeWeightNames.expert(l, j, MoeWeightNames.DOWN), () -> ffn.downColumns(e), d, e.length);
        }
        out.put(MoeWeightNames.routerClassifier(l), router.classifier(), nr, d);
        out.put(MoeWeightNames.routerGate(l), router.gate(), nr, d);
        out.put(MoeWeightNames.routerScale(l), new float[nr], nr);
        out.put(MoeWeightNames.routerBias(l), new float[nr], nr);
    }

    /** Sets layer {@code l}'s router bias b in {@code tensors} to {@code bias}. */
    static void setBias(TensorMap tensors, int l, float[] bias) {
        float[] b = tensors.values(MoeWeightNames.routerBias(l));
        System.arraycopy(bias, 0, b, 0, b.length);
    }
}
