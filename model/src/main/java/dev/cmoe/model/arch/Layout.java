package dev.cmoe.model.arch;

import dev.cmoe.model.config.ModelConfig;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Every tensor of a dense checkpoint of a config, with its Hugging Face shape, in checkpoint
 * order: what the loader requires, the trainer creates and the synthetic-checkpoint writer writes.
 */
public final class Layout {
    private Layout() {
    }

    /** Name → shape of every dense tensor of {@code c}. */
    public static Map<String, long[]> dense(ModelConfig c) {
        Map<String, long[]> s = new LinkedHashMap<>();
        int d = c.hiddenSize();
        int f = c.intermediateSize();
        s.put(TensorNames.EMBED, new long[] {c.vocabSize(), d});
        for (int i = 0; i < c.numLayers(); i++) {
            s.put(TensorNames.of(i, TensorNames.ATTN_NORM), new long[] {d});
            s.put(TensorNames.weight(i, TensorNames.Q), new long[] {c.qDim(), d});
            s.put(TensorNames.weight(i, TensorNames.K), new long[] {c.kvDim(), d});
            s.put(TensorNames.weight(i, TensorNames.V), new long[] {c.kvDim(), d});
            s.put(TensorNames.weight(i, TensorNames.O), new long[] {d, c.qDim()});
            if (c.attentionBias()) {
                s.put(TensorNames.bias(i, TensorNames.Q), new long[] {c.qDim()});
                s.put(TensorNames.bias(i, TensorNames.K), new long[] {c.kvDim()});
                s.put(TensorNames.bias(i, TensorNames.V), new long[] {c.kvDim()});
            }
            if (c.outputBias()) {
                s.put(TensorNames.bias(i, TensorNames.O), new long[] {d});
            }
            if (c.qkNorm()) {
                s.put(TensorNames.of(i, TensorNames.Q_NORM), new long[] {c.headDim()});
                s.put(TensorNames.of(i, TensorNames.K_NORM), new long[] {c.headDim()});
            }
            s.put(TensorNames.of(i, TensorNames.FFN_NORM), new long[] {d});
            s.put(TensorNames.weight(i, TensorNames.GATE), new long[] {f, d});
            s.put(TensorNames.weight(i, TensorNames.UP), new long[] {f, d});
            s.put(TensorNames.weight(i, TensorNames.DOWN), new long[] {d, f});
        }
        s.put(TensorNames.FINAL_NORM, new long[] {d});
        if (!c.tieWordEmbeddings()) {
            s.put(TensorNames.LM_HEAD, new long[] {c.vocabSize(), d});
        }
        return s;
    }

    /** Whether {@code name} is a dense FFN tensor (what carving replaces), as opposed to attention, norms, embeddings. */
    public static boolean isFfn(String name) {
        return name.startsWith("model.layers.") && name.contains("." + TensorNames.MLP);
    }
}
