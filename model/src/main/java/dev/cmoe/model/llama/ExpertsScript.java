package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.IValue;
import dev.cmoe.model.safetensors.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Several routed experts' SwiGLUs over their rows in one engine call, for a device that hosts
 * experts apart from their model (an expert worker): the very methods of {@link LayerScript}'s
 * carved block, before its combine, so a served expert's output equals the in-process one's.
 */
public final class ExpertsScript {
    private static final String CLASS = "CmoeExperts";
    private static final Map<DType, ExpertsScript> SCRIPTS = new ConcurrentHashMap<>();

    private final PtSymbolBlock module;
    private final DType dtype;

    private ExpertsScript(PtSymbolBlock module, DType dtype) {
        this.module = module;
        this.dtype = dtype;
    }

    /** The script for expert weights held in {@code dtype}; compiled once per process. */
    public static ExpertsScript of(DType dtype) {
        return SCRIPTS.computeIfAbsent(dtype, d -> new ExpertsScript(TorchScripts.load(CLASS, source(d)), d));
    }

    static String source(DType dtype) {
        String self = "self: __torch__." + CLASS;
        return LayerScript.header(CLASS) + LayerScript.proj(self, dtype) + LayerScript.expertMethods(self);
    }

    /**
     * Each expert's unweighted output for its rows, in the order of the rows.
     *
     * @param x (Σ rows, hidden) float32: expert 0's rows, then expert 1's, …
     * @param counts rows of each expert, ≥ 1 each
     * @param gateUps per expert its fused gate/up weight transposed, (hidden, 2m), in this dtype
     * @param downs per expert its down weight transposed, (m, hidden)
     * @return (Σ rows, hidden) float32, in x's manager
     */
    public NDArray outputs(NDArray x, int[] counts, NDArray[] gateUps, NDArray[] downs) {
        long[] cuts = new long[counts.length - 1];
        long at = 0;
        for (int i = 0; i < cuts.length; i++) {
            at += counts[i];
            cuts[i] = at;
        }
        boolean fork = LayerScript.forks(LayerScript.splitNow(), gateUps[0], dtype, LayerScript.SPLIT_BYTES);
        long[] flags = {0, 2, 0, 0, 0, fork ? 1 : 0, 0};
        List<IValue> in = new ArrayList<>(6);
        try {
            in.add(IValue.from((PtNDArray) x));
            in.add(IValue.from((PtNDArray) x)); // take: unused, the rows come sorted
            in.add(IValue.listFrom(TorchScripts.pt(gateUps)));
            in.add(IValue.listFrom(TorchScripts.pt(downs)));
            in.add(IValue.listFrom(cuts));
            in.add(IValue.listFrom(flags));
            try (IValue out = TorchScripts.run(module, "outputs", in.toArray(new IValue[0]))) {
                return out.toTensor((PtNDManager) x.getManager());
            }
        } finally {
            in.forEach(IValue::close);
        }
    }
}
