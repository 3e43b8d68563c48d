package dev.cmoe.model;

import dev.cmoe.model.config.ModelConfig;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.llama.DecoderWeights;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.safetensors.DType;
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
    private final LoadSpec spec;

    private ModelDir(Path dir, ModelConfig config, Optional<MoeConfig> moe, LlamaModel model, TextTokenizer tokenizer,
                     LoadSpec spec) {
        this.dir = dir;
        this.spec = spec;
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
        return open(dir, LoadSpec.full());
    }

    /**
     * Opens {@code dir} loading what {@code spec} asks for: a carved model opened
     * {@link LoadSpec.RoutedExperts#SERVED_BY_ACTORS} reads no routed expert tensor; its layers
     * route and run the shared expert, and fail if asked to run routed experts in-process.
     */
    public static ModelDir open(Path dir, LoadSpec spec) {
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException("model directory " + dir + " does not exist");
        }
        ModelConfig config = ModelConfig.load(dir);
        Optional<MoeConfig> moe = MoeConfig.of(config);
        LlamaModel model;
        boolean routedHere = spec.routed() == LoadSpec.RoutedExperts.IN_PROCESS;
        try (Checkpoint checkpoint = Checkpoint.open(dir)) {
            DType dtype = spec.resolveDtype(config, checkpoint);
            WeightKernels kernels = WeightKernels.of(dtype);
            NDManager manager = NDManager.newBaseManager(spec.device());
            try {
                kernels.checkComputes(manager);
            } catch (RuntimeException e) {
                manager.close();
                throw e;
            }
            DecoderWeights weights = DecoderWeights.frozen(manager, TensorSource.of(checkpoint), kernels);
            model = LlamaModel.create(config, weights, moe.isPresent()
                    ? (w, layer) -> MoeFeedForward.load(w.manager(), w.source(), layer, config, moe.get(), routedHere,
                            kernels)
                    : LlamaModel.denseFeedForwards(config));
        }
        try {
            return new ModelDir(dir, config, moe, model, TextTokenizer.load(dir), spec);
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

    /** What was loaded. */
    public LoadSpec loadSpec() {
        return spec;
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
