package dev.cmoe.carve;

import dev.cmoe.model.ModelDir;
import dev.cmoe.model.io.AtomicDir;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.nio.file.Path;
import java.util.List;

/**
 * A carved model in memory: the transformer with every FFN replaced by its MoE, the carved
 * tensors, and the report. It can be evaluated as it is, and saved as a model directory that
 * {@link ModelDir#open} loads as the same model.
 */
public final class CarvedModel implements AutoCloseable {
    private final ModelDir dir;
    private final Checkpoint dense;
    private final MoeConfig moe;
    private final List<TensorMap> layers; // per layer, the carved tensors as they are loaded
    private final CarveReport report;

    CarvedModel(ModelDir dir, Checkpoint dense, MoeConfig moe, List<TensorMap> layers, CarveReport report) {
        this.dir = dir;
        this.dense = dense;
        this.moe = moe;
        this.layers = List.copyOf(layers);
        this.report = report;
    }

    /** The carved transformer (its FFNs are {@code MoeFeedForward}s). */
    public LlamaModel model() {
        return dir.model();
    }

    public TextTokenizer tokenizer() {
        return dir.tokenizer();
    }

    public MoeConfig moe() {
        return moe;
    }

    /** Layer {@code layer}'s carved tensors, as saved. */
    TensorMap layerTensors(int layer) {
        return layers.get(layer);
    }

    /** The report of the carving, without output directory or save time until {@link #save}. */
    public CarveReport report() {
        return report;
    }

    /**
     * Writes the carved model to {@code out} through a staging directory ({@link CarvedCheckpoint}:
     * the dense checkpoint's dtype, every non-FFN tensor as it was, each layer's MoE tensors where
     * its dense FFN was, their neuron rows exactly the dense ones) with carve_report.json.
     *
     * @return the report with the output directory and the save time filled in
     */
    public CarveReport save(Path out, boolean force) {
        long start = System.nanoTime();
        CarveReport[] saved = new CarveReport[1];
        AtomicDir.write(out, force, staging -> {
            try (CarvedCheckpoint files = CarvedCheckpoint.start(staging, dense, dir.config(), moe,
                    CarvedCheckpoint.SHARD_BYTES)) {
                for (int l = 0; l < layers.size(); l++) {
                    files.layer(layers.get(l));
                    files.bias(l, layers.get(l).values(MoeWeightNames.routerBias(l)));
                }
                files.finish(staging, dir.dir(), dir.config(), moe);
            }
            saved[0] = CarvedCheckpoint.writeReport(staging, report, out, start);
        });
        return saved[0];
    }

    @Override
    public void close() {
        try {
            dir.close();
        } finally {
            dense.close();
        }
    }
}
