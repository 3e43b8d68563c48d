package dev.cmoe.carve.adapt;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.carve.CarveReport;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.io.AtomicDir;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import dev.cmoe.model.train.AdamW;
import dev.cmoe.model.train.TrainableMoeLlama;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Writes an adaptation's output directory, atomically: a normal carved checkpoint with the
 * adapters merged into the weights (same tensor names, order and F32 format as {@code cmoe carve}
 * writes), its config with an {@code adaptation} note in the {@code cmoe} block, the input's other
 * files, carve_report.json with the adaptation block, the training curves, and the run state.
 */
final class AdaptedCheckpoint {
    static final String FIRST_MOMENT = "m.";
    static final String SECOND_MOMENT = "v.";
    /** Files of the input that the output replaces rather than copies. */
    private static final List<String> REPLACED = List.of("config.json", CarveReport.FILE, AdaptState.FILE,
            AdaptState.TENSORS, AdaptPlots.FILE, Checkpoint.INDEX_FILE);

    private final Path inputDir;
    private final Checkpoint input;
    private final ModelConfig config;

    AdaptedCheckpoint(Path inputDir, Checkpoint input, ModelConfig config) {
        this.inputDir = inputDir;
        this.input = input;
        this.config = config;
    }

    /**
     * Replaces {@code out} with the model as it is now.
     *
     * @param adam the optimizer whose moments make the run resumable, or null once it is finished
     */
    void write(Path out, TrainableMoeLlama model, AdamW adam, AdaptState state, AdaptReport report) {
        AtomicDir.write(out, true, dir -> {
            SafetensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), weights(model), Map.of("format", "pt"),
                    DType.F32);
            Files.writeString(dir.resolve("config.json"), configJson(report), StandardCharsets.UTF_8);
            copyOtherFiles(dir);
            Files.writeString(dir.resolve(CarveReport.FILE), reportJson(report), StandardCharsets.UTF_8);
            AdaptPlots.write(report, dir);
            state.write(dir);
            if (adam != null) {
                Map<String, SafetensorsWriter.Tensor> t = new LinkedHashMap<>(model.adapterTensors());
                adam.firstMoments().forEach((k, a) -> t.put(FIRST_MOMENT + k, tensor(a)));
                adam.secondMoments().forEach((k, a) -> t.put(SECOND_MOMENT + k, tensor(a)));
                SafetensorsWriter.write(dir.resolve(AdaptState.TENSORS), t, Map.of(), DType.F32);
            }
        });
    }

    /** The input's tensors in its order, the adapted ones merged. */
    private Map<String, SafetensorsWriter.Tensor> weights(TrainableMoeLlama model) {
        Map<String, SafetensorsWriter.Tensor> merged = model.checkpointTensors(true);
        Map<String, SafetensorsWriter.Tensor> out = new LinkedHashMap<>();
        for (String name : input.names()) {
            SafetensorsWriter.Tensor t = merged.get(name);
            out.put(name, t != null ? t : new SafetensorsWriter.Tensor(input.info(name).shape(), input.readF32(name)));
        }
        for (String name : merged.keySet()) {
            if (!out.containsKey(name)) {
                throw new IllegalStateException("adapted tensor " + name + " is not in the input checkpoint");
            }
        }
        return out;
    }

    private String configJson(AdaptReport report) {
        JsonObject raw = config.rawCopy();
        if (raw.has("torch_dtype")) {
            raw.addProperty("torch_dtype", "float32");
        }
        JsonObject cmoe = raw.getAsJsonObject(MoeConfig.KEY);
        JsonObject note = new JsonObject();
        note.addProperty("steps", report.steps());
        note.addProperty("samples", report.options().samples());
        note.addProperty("seqlen", report.seqLen());
        note.addProperty("epochs", report.options().epochs());
        note.addProperty("lora_rank", report.options().lora().rank());
        note.addProperty("lora_alpha", report.options().lora().alpha());
        note.addProperty("bias_speed", report.options().biasSpeed());
        note.addProperty("finished", report.finished());
        cmoe.add(AdaptReport.KEY, note);
        return AdaptReport.pretty(raw);
    }

    /** The input's carve report (when it has one) with the adaptation block added. */
    private String reportJson(AdaptReport report) throws IOException {
        Path carved = inputDir.resolve(CarveReport.FILE);
        JsonObject o = Files.isRegularFile(carved)
                ? JsonParser.parseString(Files.readString(carved, StandardCharsets.UTF_8)).getAsJsonObject()
                : new JsonObject();
        o.add(AdaptReport.KEY, AdaptReport.toTree(report));
        return AdaptReport.pretty(o);
    }

    /** Tokenizer, generation config, the carving's plots: every file the output does not rewrite. */
    private void copyOtherFiles(Path dir) throws IOException {
        try (Stream<Path> files = Files.list(inputDir)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                String name = f.getFileName().toString();
                if (Files.isRegularFile(f) && !name.endsWith(".safetensors") && !REPLACED.contains(name)
                        && !name.startsWith(".")) {
                    Files.copy(f, dir.resolve(name));
                }
            }
        }
    }

    private static SafetensorsWriter.Tensor tensor(ai.djl.ndarray.NDArray a) {
        return new SafetensorsWriter.Tensor(a.getShape().getShape(), java.nio.FloatBuffer.wrap(a.toFloatArray()));
    }
}
