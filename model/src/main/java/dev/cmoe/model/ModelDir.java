package dev.cmoe.model;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * A Hugging Face model directory opened for use: its config, its weights on the engine and its
 * tokenizer. Everything is validated while opening; a failure closes what was opened and names
 * the file at fault.
 */
public final class ModelDir implements AutoCloseable {
    private final Path dir;
    private final ModelConfig config;
    private final Optional<MoeConfig> moe;
    private final LlamaModel model;
    private final TextTokenizer tokenizer;

    private ModelDir(Path dir, ModelConfig config, Optional<MoeConfig> moe, LlamaModel model, TextTokenizer tokenizer) {
        this.dir = dir;
        this.config = config;
        this.moe = moe;
        this.model = model;
        this.tokenizer = tokenizer;
    }

    /**
     * Opens {@code dir}: config.json, *.safetensors (single or sharded) and tokenizer.json. A config
     * with a {@code cmoe} block is a carved model: every layer's FFN is then a {@link MoeFeedForward}.
     */
    public static ModelDir open(Path dir) {
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException("model directory " + dir + " does not exist");
        }
        ModelConfig config = ModelConfig.load(dir);
        Optional<MoeConfig> moe = MoeConfig.of(config);
        LlamaModel model;
        try (Checkpoint checkpoint = Checkpoint.open(dir)) {
            model = LlamaModel.create(config, TensorSource.of(checkpoint), moe.isPresent()
                    ? (w, layer) -> MoeFeedForward.load(w.manager(), w.source(), layer, config, moe.get())
                    : LlamaModel.denseFeedForwards(config));
        }
        try {
            return new ModelDir(dir, config, moe, model, TextTokenizer.load(dir));
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

    /** The carving of a Mixture-of-Experts model; empty for a dense one. */
    public Optional<MoeConfig> moe() {
        return moe;
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
