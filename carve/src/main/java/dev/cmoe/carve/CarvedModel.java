package dev.cmoe.carve;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.io.AtomicDir;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A carved model in memory: the transformer with every FFN replaced by its MoE, the carved
 * tensors, and the report. It can be evaluated as it is, and saved as a model directory that
 * {@link ModelDir#open} loads as the same model.
 */
public final class CarvedModel implements AutoCloseable {
    /** Files copied from the dense model directory when present (tokenizer.json is required). */
    static final List<String> COPIED = List.of("tokenizer.json", "tokenizer_config.json", "generation_config.json",
            "special_tokens_map.json");

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
     * Writes the carved model to {@code out} through a staging directory: config.json (the dense
     * config plus the {@code cmoe} block), model.safetensors (in the dense checkpoint's dtype:
     * every non-FFN tensor as it was, each layer's MoE tensors where its dense FFN was, their neuron
     * rows exactly the dense ones), the tokenizer and generation files, and
     * carve_report.json.
     *
     * @return the report with the output directory and the save time filled in
     */
    public CarveReport save(Path out, boolean force) {
        long start = System.nanoTime();
        CarveReport[] saved = new CarveReport[1];
        AtomicDir.write(out, force, staging -> {
            SafetensorsWriter.write(staging.resolve(Checkpoint.SINGLE_FILE), tensors(), Map.of("format", "pt"),
                    dense.dtype());
            Files.writeString(staging.resolve("config.json"), configJson(), StandardCharsets.UTF_8);
            for (String name : COPIED) {
                Path from = dir.dir().resolve(name);
                if (Files.isRegularFile(from)) {
                    Files.copy(from, staging.resolve(name));
                }
            }
            CarveReport.Timings t = report.seconds();
            double save = Carver.seconds(start);
            saved[0] = new CarveReport(report.model(), out.toString(), report.options(), report.expertSize(),
                    report.calibrationTokens(), report.seqlen(), report.layers(),
                    new CarveReport.Timings(t.load(), t.calibrationText(), t.carve(), save, t.total() + save));
            Files.writeString(staging.resolve(CarveReport.FILE), saved[0].toJson(), StandardCharsets.UTF_8);
        });
        return saved[0];
    }

    /** Checkpoint order, with each layer's MoE tensors in place of its dense FFN's three. */
    private Map<String, SafetensorsWriter.Tensor> tensors() {
        Map<String, SafetensorsWriter.Tensor> out = new LinkedHashMap<>();
        boolean[] placed = new boolean[layers.size()];
        for (String name : dense.names()) {
            int layer = denseFfnLayer(name);
            if (layer < 0) {
                out.put(name, new SafetensorsWriter.Tensor(dense.info(name).shape(), dense.readF32(name)));
            } else if (!placed[layer]) {
                out.putAll(layers.get(layer).tensors());
                placed[layer] = true;
            }
        }
        return out;
    }

    /** The layer whose dense FFN weight {@code name} is, or −1. */
    private int denseFfnLayer(String name) {
        for (int l = 0; l < layers.size(); l++) {
            for (String proj : new String[] {MoeWeightNames.GATE, MoeWeightNames.UP, MoeWeightNames.DOWN}) {
                if (name.equals(MoeWeightNames.dense(l, proj))) {
                    return l;
                }
            }
        }
        return -1;
    }

    private String configJson() {
        ModelConfig config = dir.config();
        JsonObject raw = config.rawCopy();
        raw.addProperty("torch_dtype", dense.dtype().torchName()); // written in the dense checkpoint's dtype
        raw.add(MoeConfig.KEY, moe.toJson());
        return new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(raw);
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
