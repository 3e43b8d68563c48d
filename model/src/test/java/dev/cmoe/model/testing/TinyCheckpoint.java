package dev.cmoe.model.testing;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.safetensors.SafetensorsWriter;
import java.io.IOException;
import java.io.InputStream;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a {@link RandomModel} as a real Hugging Face model directory (config.json,
 * model.safetensors, a small trained tokenizer.json), so tests exercise the same loading path
 * as users.
 */
public final class TinyCheckpoint {
    /** Text the fixture tokenizer learns its merges from. */
    public static final String TEXT = """
            The jury said the city had done its work well. The jury said it would return.
            The election was held on Friday, and the jury praised the city for the election.
            """;

    private TinyCheckpoint() {
    }

    /** A config whose vocabulary fits a byte-level tokenizer (≥ 258 ids). */
    public static ModelConfig llama() {
        return RandomModel.config("llama", 64, 96, 2, 8, 2, 300, false, null);
    }

    /** Ids of the fixture tokenizer: byte-level BPE trained on {@link #TEXT} (the train module checks it). */
    public static final int TOKENIZER_IDS = 300;

    /**
     * Writes {@code weights} to {@code dir} in {@code dtype} with the fixture tokenizer, the one
     * {@code BpeTrainer} learns from {@link #TEXT} with 300 ids, kept as a test resource so that
     * this module's tests need no tokenizer training.
     */
    public static Path write(RandomModel weights, Path dir, DType dtype) throws IOException {
        Files.createDirectories(dir);
        Map<String, SafetensorsWriter.Tensor> tensors = new LinkedHashMap<>();
        weights.tensors().forEach((name, t) ->
                tensors.put(name, new SafetensorsWriter.Tensor(t.shape(), FloatBuffer.wrap(t.data()))));
        SafetensorsWriter.write(dir.resolve("model.safetensors"), tensors, Map.of("format", "pt"), dtype);
        Files.writeString(dir.resolve("config.json"), weights.config().toJson(), StandardCharsets.UTF_8);
        if (weights.config().vocabSize() < TOKENIZER_IDS) {
            throw new IllegalArgumentException("the fixture tokenizer has " + TOKENIZER_IDS + " ids; the config's "
                    + "vocabulary of " + weights.config().vocabSize() + " cannot hold them");
        }
        for (String name : List.of("tokenizer.json", "tokenizer_config.json")) {
            try (InputStream in = TinyCheckpoint.class.getResourceAsStream("/tiny-tokenizer/" + name)) {
                if (in == null) {
                    throw new IllegalStateException("test resource /tiny-tokenizer/" + name + " is missing");
                }
                Files.copy(in, dir.resolve(name), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
        }
        return dir;
    }

    /** Seeded random sentences over {@link #TEXT}'s words (a few thousand tokens): calibration text for carving tests. */
    public static Path calibrationText(Path file) throws IOException {
        String[] words = TEXT.replaceAll("[.,]", "").split("\\s+");
        java.util.Random r = new java.util.Random(5);
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 1500; i++) {
            sb.append(words[r.nextInt(words.length)]).append(i % 12 == 11 ? ".\n" : " ");
        }
        Files.writeString(file, sb.toString(), StandardCharsets.UTF_8);
        return file;
    }
}
