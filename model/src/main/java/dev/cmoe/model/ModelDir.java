package dev.cmoe.model;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A Hugging Face model directory opened for use: its config, its weights on the engine and its
 * tokenizer. Everything is validated while opening; a failure closes what was opened and names
 * the file at fault.
 */
public final class ModelDir implements AutoCloseable {
    private final Path dir;
    private final ModelConfig config;
    private final LlamaModel model;
    private final TextTokenizer tokenizer;

    private ModelDir(Path dir, ModelConfig config, LlamaModel model, TextTokenizer tokenizer) {
        this.dir = dir;
        this.config = config;
        this.model = model;
        this.tokenizer = tokenizer;
    }

    /** Opens {@code dir}: config.json, *.safetensors (single or sharded) and tokenizer.json. */
    public static ModelDir open(Path dir) {
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException("model directory " + dir + " does not exist");
        }
        ModelConfig config = ModelConfig.load(dir);
        LlamaModel model;
        try (Checkpoint checkpoint = Checkpoint.open(dir)) {
            model = LlamaModel.dense(config, TensorSource.of(checkpoint));
        }
        try {
            return new ModelDir(dir, config, model, TextTokenizer.load(dir));
        } catch (IOException e) {
            model.close();
            throw new UncheckedIOException(e.getMessage(), e);
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
    }

    public Path dir() {
        return dir;
    }

    public ModelConfig config() {
        return config;
    }

    public LlamaModel model() {
        return model;
    }

    public TextTokenizer tokenizer() {
        return tokenizer;
    }

    @Override
    public void close() {
        try {
            tokenizer.close();
        } finally {
            model.close();
        }
    }
}
