package dev.cmoe.carve;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import dev.cmoe.model.arch.Layout;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.CheckpointWriter;
import dev.cmoe.model.safetensors.RawTensor;
import java.io.IOException;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The carved model's files, written into a staging directory as the carving goes: every tensor of
 * the dense checkpoint that is not an FFN weight is copied as stored, each layer's MoE tensors go
 * where its dense FFN was once that layer is carved, in the dense checkpoint's dtype, sharded
 * with an index when large. Carving in memory and carving layer by layer write through this one
 * class, so both produce the same checkpoint.
 */
final class CarvedCheckpoint implements AutoCloseable {
    /** The most tensor bytes per shard: what Hugging Face's save_pretrained uses by default. */
    static final long SHARD_BYTES = 5_000_000_000L;
    /** Files copied from the dense model directory when present (tokenizer.json is required). */
    static final List<String> COPIED = List.of("tokenizer.json", "tokenizer_config.json", "generation_config.json",
            "special_tokens_map.json");

    private final CheckpointWriter writer;

    private CarvedCheckpoint(CheckpointWriter writer) {
        this.writer = writer;
    }

    /** Starts the carved checkpoint in {@code staging} and copies the dense tensors carving keeps. */
    static CarvedCheckpoint start(Path staging, Checkpoint dense, ModelConfig config, MoeConfig moe,
                                  long shardBytes) {
        Map<String, long[]> layout = new LinkedHashMap<>();
        boolean[] placed = new boolean[config.numLayers()];
        for (String name : dense.names()) {
            int layer = denseFfnLayer(name, config.numLayers());
            if (layer < 0) {
                layout.put(name, dense.info(name).shape());
            } else if (!placed[layer]) {
                layout.putAll(MoeWeightNames.layerLayout(config, moe, layer));
                placed[layer] = true;
            }
        }
        CheckpointWriter writer = CheckpointWriter.create(staging, layout, dense.dtype(), shardBytes,
                Map.of("format", "pt"));
        try {
            for (String name : dense.names()) {
                if (denseFfnLayer(name, config.numLayers()) < 0) {
                    RawTensor raw = dense.readRaw(name);
                    try {
                        writer.writeRaw(name, raw);
                    } finally {
                        raw.release();
                    }
                }
            }
        } catch (RuntimeException | Error e) {
            writer.close();
            throw e;
        }
        return new CarvedCheckpoint(writer);
    }

    /**
     * Writes one carved layer's tensors, rounded to the checkpoint's dtype, all but the router's
     * bias b: {@link #bias} writes that once the layer's budget, and so its balance, is final.
     */
    void layer(TensorMap tensors) {
        for (String name : tensors.names()) {
            if (!MoeWeightNames.isRouterBias(name)) {
                writer.write(name, tensors.read(name));
            }
        }
    }

    /** Writes layer {@code layer}'s router bias b. */
    void bias(int layer, float[] b) {
        writer.write(MoeWeightNames.routerBias(layer), FloatBuffer.wrap(b));
    }

    /**
     * Completes the checkpoint and writes config.json (the dense config plus the {@code cmoe}
     * block, torch_dtype the stored one) and the tokenizer and generation files beside it.
     */
    void finish(Path staging, Path denseDir, ModelConfig config, MoeConfig moe) throws IOException {
        writer.finish();
        JsonObject raw = config.rawCopy();
        raw.addProperty("torch_dtype", writer.dtype().torchName());
        raw.add(MoeConfig.KEY, moe.toJson());
        Files.writeString(staging.resolve("config.json"),
                new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(raw),
                StandardCharsets.UTF_8);
        for (String name : COPIED) {
            Path from = denseDir.resolve(name);
            if (Files.isRegularFile(from)) {
                Files.copy(from, staging.resolve(name));
            }
        }
    }

    /**
     * Writes carve_report.json beside the checkpoint: {@code report} as saved to {@code out}, its
     * save time counted from {@code savingSince} (a {@link System#nanoTime} reading).
     */
    static CarveReport writeReport(Path staging, CarveReport report, Path out, long savingSince) throws IOException {
        CarveReport saved = report.saved(out, Carver.seconds(savingSince));
        Files.writeString(staging.resolve(CarveReport.FILE), saved.toJson(), StandardCharsets.UTF_8);
        return saved;
    }

    /** The layer whose dense FFN weight {@code name} is, or −1. */
    static int denseFfnLayer(String name, int layers) {
        if (!Layout.isFfn(name)) {
            return -1;
        }
        for (int l = 0; l < layers; l++) {
            for (String proj : new String[] {MoeWeightNames.GATE, MoeWeightNames.UP, MoeWeightNames.DOWN}) {
                if (name.equals(MoeWeightNames.dense(l, proj))) {
                    return l;
                }
            }
        }
        return -1;
    }

    @Override
    public void close() {
        writer.close();
    }
}
