package dev.cmoe.deploy.bench;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import dev.cmoe.model.arch.Layout;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.io.AtomicDir;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.CheckpointWriter;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Writes a random-weight checkpoint of a given config in the real Hugging Face layout: config.json,
 * safetensors shards of at most a given size with model.safetensors.index.json (one file when it
 * fits), and a tokenizer copied from another model. A carved one (a MoE config) carries the
 * {@code cmoe} block and the carved tensors, so servers and benchmarks can run real shapes
 * without carving them first. Only one tensor is in memory at a time, and the directory
 * appears only when complete.
 */
public final class SyntheticCheckpoint {
    private SyntheticCheckpoint() {
    }

    /**
     * @param raw the config.json to write (validated as a {@link ModelConfig})
     * @param moe a carving to write instead of the dense FFNs, or empty
     * @param values where each tensor's numbers come from
     * @param tokenizerDir a model directory whose tokenizer files are copied (its ids must fit the vocabulary)
     * @param shardBytes the most bytes of tensor data per shard
     */
    public static void write(JsonObject raw, Optional<MoeConfig> moe, TensorSource values, Path tokenizerDir,
                             Path out, DType dtype, long shardBytes, boolean force) {
        JsonObject config = raw.deepCopy();
        config.addProperty("torch_dtype", dtype.torchName());
        moe.ifPresent(m -> config.add(MoeConfig.KEY, m.toJson()));
        ModelConfig parsed = ModelConfig.parse(config.toString(), "synthetic config");
        moe.ifPresent(m -> MoeConfig.of(parsed)); // checks N·m = intermediate size
        Map<String, long[]> layout = moe.isPresent() ? MoeWeightNames.carvedLayout(parsed, moe.get())
                : Layout.dense(parsed);
        AtomicDir.write(out, force, staging -> {
            try (CheckpointWriter writer = CheckpointWriter.create(staging, layout, dtype, shardBytes,
                    Map.of("format", "pt"))) {
                for (Map.Entry<String, long[]> e : layout.entrySet()) {
                    writer.write(e.getKey(), values.read(e.getKey(), e.getValue()));
                }
                writer.finish();
            }
            Files.writeString(staging.resolve("config.json"), pretty(config), StandardCharsets.UTF_8);
            copyTokenizer(tokenizerDir, staging);
        });
    }

    private static void copyTokenizer(Path from, Path to) throws IOException {
        Path json = from.resolve(TextTokenizer.TOKENIZER_JSON);
        if (!Files.isRegularFile(json)) {
            throw new IllegalArgumentException("no " + TextTokenizer.TOKENIZER_JSON + " in " + from + " to copy");
        }
        Files.copy(json, to.resolve(TextTokenizer.TOKENIZER_JSON));
        for (String name : List.of(TextTokenizer.TOKENIZER_CONFIG_JSON, "generation_config.json")) {
            if (Files.isRegularFile(from.resolve(name))) {
                Files.copy(from.resolve(name), to.resolve(name));
            }
        }
    }

    private static String pretty(JsonObject o) {
        return new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(o) + "\n";
    }
}
