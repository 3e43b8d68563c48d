package dev.cmoe.carve;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.google.gson.JsonObject;
import dev.cmoe.carve.cluster.MarkerMatrix;
import dev.cmoe.model.llama.Tensors;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.io.AtomicDir;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.WeightKernels;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.MoeWeightNames;
import dev.cmoe.model.safetensors.Checkpoint;
import dev.cmoe.model.tokenizer.TextTokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.function.BiFunction;
import java.util.function.Consumer;
import java.util.function.IntConsumer;

/**
 * Carves a dense LLaMA-family model into a Mixture-of-Experts, layer by layer from the first to
 * the last, as the CMoE method prescribes: each layer is calibrated on the output of the layers
 * before it <em>after</em> they were carved, then replaced by its MoE before the next one.
 */
public final class Carver {
    /** The choices behind a {@link CarveOptions.Method}: kept apart so experiments can vary them. */
    record Recipe(int maxPasses, RouterFit.Kind router, Grouping grouping, NeuronScores.Importance importance,
                  LoadBalancer.Rule balance, Budget budget, boolean restream) {
        static final int MAX_PASSES = 20;
        /** Passes of the profile k-means: bounds the carve time (each pass is one exact assignment). */
        static final int PROFILE_PASSES = 5;

        Recipe(int maxPasses, RouterFit.Kind router, Grouping grouping, NeuronScores.Importance importance,
               LoadBalancer.Rule balance) {
            this(maxPasses, router, grouping, importance, balance, Budget.UNIFORM, true);
        }

        Recipe(int maxPasses, RouterFit.Kind router) {
            this(maxPasses, router, false);
        }

        Recipe(int maxPasses, RouterFit.Kind router, boolean randomGroups) {
            this(maxPasses, router, randomGroups ? Grouping.RANDOM : Grouping.MARKERS, NeuronScores.Importance.SCORE,
                    LoadBalancer.Rule.SIGN);
        }

        static Recipe of(CarveOptions.Method method) {
            return switch (method) {
                case CMOE -> new Recipe(1, RouterFit.Kind.REPRESENTATIVE);
                // measured (CompareExperiment, carve/README.md): the contribution importance lowered
                // perplexity at every shape; iterating the marker clustering did not (VariantsExperiment)
                // per-layer budgets: measured the largest single gain of all (carve/README.md)
                case OURS -> new Recipe(1, RouterFit.Kind.FITTED, Grouping.MARKERS,
                        NeuronScores.Importance.CONTRIBUTION, LoadBalancer.Rule.QUANTILE, Budget.ADAPTIVE, true);
                case FITTED -> new Recipe(1, RouterFit.Kind.FITTED);
                case PROFILES -> new Recipe(PROFILE_PASSES, RouterFit.Kind.FITTED, Grouping.PROFILES,
                        NeuronScores.Importance.CONTRIBUTION, LoadBalancer.Rule.QUANTILE);
                case RANDOM_GROUPS -> new Recipe(1, RouterFit.Kind.REPRESENTATIVE, true);
                case RANDOM_ROUTER -> new Recipe(1, RouterFit.Kind.RANDOM);
            };
        }

        /** The method's recipe, with the layer budgets {@code opts} asks for. */
        static Recipe of(CarveOptions opts) {
            Recipe r = of(opts.method());
            return switch (opts.budgets()) {
                case METHOD -> r;
                case UNIFORM -> r.withBudget(Budget.UNIFORM);
                case ADAPTIVE -> r.withBudget(Budget.ADAPTIVE);
            };
        }

        Recipe withGrouping(Grouping g, int passes) {
            return new Recipe(passes, router, g, importance, balance, budget, restream);
        }

        Recipe withImportance(NeuronScores.Importance i) {
            return new Recipe(maxPasses, router, grouping, i, balance, budget, restream);
        }

        Recipe withRouter(RouterFit.Kind k) {
            return new Recipe(maxPasses, k, grouping, importance, balance, budget, restream);
        }

        Recipe withBalance(LoadBalancer.Rule rule) {
            return new Recipe(maxPasses, router, grouping, importance, rule, budget, restream);
        }

        Recipe withBudget(Budget b) {
            return new Recipe(maxPasses, router, grouping, importance, balance, b, restream);
        }

        /**
         * With per-layer budgets and balancing, whether every layer after the first is balanced
         * again behind the layers' own budgets ({@link Carver#restream}; on in every recipe:
         * measured more even loads on held-out text at 25% and 50% active, carve/README.md).
         */
        Recipe withRestream(boolean again) {
            return new Recipe(maxPasses, router, grouping, importance, balance, budget, again);
        }
    }

    /** How many routed experts each layer selects ({@link LayerBudgets}). */
    enum Budget {
        /** N_k in every layer: the reference. */
        UNIFORM,
        /** Shared out by each layer's measured error, no layer below N_k − 1. */
        ADAPTIVE,
        /** Shared out by each layer's measured error, no layer below 1. */
        ADAPTIVE_FREE;

        /** The fewest routed experts a layer may get. */
        int floor(int active) {
            return this == ADAPTIVE ? Math.max(1, active - 1) : 1;
        }
    }

    /** How the routed neurons are grouped. */
    enum Grouping {
        /** The reference: balanced assignment on the ATopK marker columns ({@link Clustering#carve}). */
        MARKERS,
        /** Ablation: seeded random groups ({@link Clustering#random}). */
        RANDOM,
        /** Balanced spherical k-means on importance profiles ({@link Clustering#profiles}). */
        PROFILES
    }

    private Carver() {
    }

    /**
     * Carves {@code modelDir} on windows of {@code calibText} and writes the carved model to
     * {@code outDir} (with carve_report.json), atomically.
     */
    public static CarveReport carve(Path modelDir, Path calibText, Path outDir, CarveOptions opts,
                                    CarveListener listener) {
        return carve(modelDir, LoadSpec.full(), calibText, outDir, opts, listener);
    }

    /** As {@link #carve(Path, Path, Path, CarveOptions, CarveListener)}, the dense model computed as {@code spec} says. */
    public static CarveReport carve(Path modelDir, LoadSpec spec, Path calibText, Path outDir, CarveOptions opts,
                                    CarveListener listener) {
        return carve(modelDir, spec, calibText, outDir, opts, listener, CarvedCheckpoint.SHARD_BYTES);
    }

    /**
     * Carves layer by layer without ever holding the model: a dense layer is loaded when its turn
     * comes, its carved tensors are written to the output as soon as it is done, and it is freed
     * before the next one, so peak memory is one layer's weights and the calibration activations
     * whatever the layer count. The output is the checkpoint {@link CarvedModel#save} writes.
     */
    static CarveReport carve(Path modelDir, LoadSpec spec, Path calibText, Path outDir, CarveOptions opts,
                             CarveListener listener, long shardBytes) {
        if (Files.exists(outDir) && !opts.force()) {
            throw new IllegalArgumentException("output directory " + outDir + " already exists (use force to replace it)");
        }
        long start = System.nanoTime();
        ModelConfig config = ModelConfig.load(modelDir);
        opts.validate(config);
        Recipe recipe = Recipe.of(opts);
        requireHeap(config, opts, recipe, Runtime.getRuntime().maxMemory());
        CarveReport[] report = new CarveReport[1];
        AtomicDir.write(outDir, opts.force(), staging -> {
            try (Checkpoint checkpoint = Checkpoint.open(modelDir);
                 TextTokenizer tokenizer = TextTokenizer.load(modelDir);
                 LlamaModel model = LlamaModel.layerwise(config, NDManager.newBaseManager(spec.device()),
                         TensorSource.of(checkpoint), WeightKernels.of(spec.resolveDtype(config, checkpoint)),
                         LlamaModel.denseFeedForwards(config))) {
                model.kernels().checkComputes(model.manager());
                double load = seconds(start);
                long t = System.nanoTime();
                int seqlen = opts.seqlen(config);
                int[][] calibration = Calibration.windows(tokenizer, calibText, opts.drawnSamples(), seqlen,
                        opts.seed());
                double text = seconds(t);
                MoeConfig moe = moeConfig(config, opts, recipe, calibText, seqlen);
                t = System.nanoTime();
                List<CarveReport.Layer> layers;
                double carve;
                long saving;
                try (CarvedCheckpoint files = CarvedCheckpoint.start(staging, checkpoint, config, moe, shardBytes)) {
                    Layers carved = carveLayers(model, TensorSource.of(checkpoint), calibration, moe, opts, recipe,
                            listener, files::layer);
                    layers = carved.reports();
                    carve = seconds(t);
                    saving = System.nanoTime();
                    for (CarveReport.Layer layer : layers) { // final only once every layer's budget is known
                        files.bias(layer.layer(), layer.bias());
                    }
                    files.finish(staging, modelDir, config, carved.moe());
                }
                CarveReport carved = new CarveReport(modelDir.toString(), null, opts, moe.expertSize(),
                        opts.calibSamples() * seqlen, seqlen, layers,
                        new CarveReport.Timings(load, text, carve, 0, (saving - start) / 1e9));
                report[0] = CarvedCheckpoint.writeReport(staging, carved, outDir, saving);
            }
        });
        listener.finished(report[0]);
        return report[0];
    }

    /**
     * The Java heap a streamed carve of one layer needs: the dense FFN in float32, the calibration
     * activations (the residual stream, its FFN input and the layer's output), with clustering on
     * profiles the (intermediate, tokens) matrix, and a margin for the rest.
     */
    static long heapNeeded(ModelConfig config, CarveOptions opts, Recipe recipe) {
        long d = config.hiddenSize();
        long inter = config.intermediateSize();
        long tokens = (long) opts.drawnSamples() * opts.seqlen(config);
        long profiles = recipe.grouping() == Grouping.PROFILES ? 4 * inter * tokens : 0;
        return 12 * d * inter + 3 * 4 * tokens * d + profiles + HEAP_MARGIN;
    }

    /** Heap beyond {@link #heapNeeded}'s tensors: clustering, the router fit, the JVM's own. */
    static final long HEAP_MARGIN = 256L << 20;

    /** Fails before any work when the heap is smaller than {@link #heapNeeded}, naming the setting to raise. */
    static void requireHeap(ModelConfig config, CarveOptions opts, Recipe recipe, long maxHeap) {
        long need = heapNeeded(config, opts, recipe);
        if (maxHeap < need) {
            throw new IllegalStateException(String.format(java.util.Locale.ROOT, "carving a layer of this model"
                    + " (hidden %d, intermediate %d, %d calibration tokens) needs about %d MiB of Java heap, the JVM"
                    + " has %d MiB: raise it, e.g. CMOE_JAVA_OPTS=-Xmx%dm", config.hiddenSize(),
                    config.intermediateSize(), opts.drawnSamples() * opts.seqlen(config), need >> 20, maxHeap >> 20,
                    (need >> 20) + 256));
        }
    }

    /** Carves {@code modelDir} and keeps the result in memory, not yet saved. */
    public static CarvedModel carveInMemory(Path modelDir, Path calibText, CarveOptions opts, CarveListener listener) {
        return carveInMemory(modelDir, calibText, opts, Recipe.of(opts), listener);
    }

    static CarvedModel carveInMemory(Path modelDir, Path calibText, CarveOptions opts, Recipe recipe,
                                     CarveListener listener) {
        return carveInMemory(modelDir, calibText, opts, recipe, listener, (tokenizer, seqlen) ->
                Calibration.windows(tokenizer, calibText, opts.drawnSamples(), seqlen, opts.seed()));
    }

    /**
     * The carving itself, with the calibration windows drawn by {@code windows} from the model's
     * tokenizer and the window length; experiments pass windows tokenised once for many carvings.
     */
    static CarvedModel carveInMemory(Path modelDir, Path calibText, CarveOptions opts, Recipe recipe,
                                     CarveListener listener, BiFunction<TextTokenizer, Integer, int[][]> windows) {
        return carveInMemory(modelDir, LoadSpec.full(), calibText, opts, recipe, listener, windows);
    }

    private static CarvedModel carveInMemory(Path modelDir, LoadSpec spec, Path calibText, CarveOptions opts,
                                             Recipe recipe, CarveListener listener,
                                             BiFunction<TextTokenizer, Integer, int[][]> windows) {
        long start = System.nanoTime();
        opts.validate(ModelConfig.load(modelDir));
        ModelDir dense = ModelDir.open(modelDir, spec);
        Checkpoint checkpoint = null;
        try {
            checkpoint = Checkpoint.open(modelDir);
            double load = seconds(start);
            long t = System.nanoTime();
            ModelConfig config = dense.config();
            int seqlen = opts.seqlen(config);
            int[][] calibration = windows.apply(dense.tokenizer(), seqlen);
            double text = seconds(t);
            MoeConfig moe = moeConfig(config, opts, recipe, calibText, seqlen);
            t = System.nanoTime();
            List<TensorMap> tensors = new ArrayList<>();
            Layers carved = carveLayers(dense.model(), TensorSource.of(checkpoint), calibration, moe, opts, recipe,
                    listener, tensors::add);
            double carve = seconds(t);
            CarveReport report = new CarveReport(modelDir.toString(), null, opts, moe.expertSize(),
                    opts.calibSamples() * seqlen, seqlen, carved.reports(),
                    new CarveReport.Timings(load, text, carve, 0, seconds(start)));
            return new CarvedModel(dense, checkpoint, carved.moe(), tensors, report);
        } catch (RuntimeException | Error e) {
            dense.close();
            if (checkpoint != null) {
                checkpoint.close();
            }
            throw e;
        }
    }

    /** The {@code cmoe} block of the carved config. */
    private static MoeConfig moeConfig(ModelConfig config, CarveOptions opts, Recipe recipe, Path calibText,
                                       int seqlen) {
        JsonObject details = new JsonObject();
        details.addProperty("k_act", opts.kAct());
        JsonObject calibration = new JsonObject();
        calibration.addProperty("samples", opts.calibSamples());
        calibration.addProperty("seqlen", seqlen);
        calibration.addProperty("seed", opts.seed());
        calibration.addProperty("source", calibText.getFileName().toString());
        details.add("calibration", calibration);
        JsonObject balance = new JsonObject();
        balance.addProperty("steps", opts.balanceSteps());
        balance.addProperty("gamma", opts.balanceGamma());
        balance.addProperty("samples", opts.drawnSamples() - opts.calibSamples());
        details.add("balance", balance);
        details.addProperty("cluster_passes", recipe.maxPasses());
        details.addProperty("router_fit", recipe.router().name().toLowerCase(Locale.ROOT));
        details.addProperty("importance", recipe.importance().name().toLowerCase(Locale.ROOT));
        details.addProperty("grouping", recipe.grouping().name().toLowerCase(Locale.ROOT));
        balance.addProperty("rule", recipe.balance().name().toLowerCase(Locale.ROOT));
        balance.addProperty("again_behind_budgets", recipe.restream());
        details.addProperty("layer_budgets", recipe.budget().name().toLowerCase(Locale.ROOT));
        details.addProperty("source_architecture", config.architectureName());
        return new MoeConfig(opts.experts(), opts.shared(), opts.active(),
                config.intermediateSize() / opts.experts(), MoeConfig.ANALYTICAL,
                opts.method().name().toLowerCase(Locale.ROOT), details);
    }

    /**
     * Carves every layer in order, handing each layer's tensors to {@code sink} once it is done; a
     * {@link LlamaModel#isLayerwise layerwise} model loads each dense layer just before and frees it
     * just after.
     */
    private static Layers carveLayers(LlamaModel model, TensorSource dense, int[][] calibration, MoeConfig moe,
                                      CarveOptions opts, Recipe recipe, CarveListener listener,
                                      Consumer<TensorMap> sink) {
        boolean layerwise = model.isLayerwise();
        // with budgets and balancing, every layer after the first is balanced again behind the budgeted layers
        boolean again = recipe.budget() != Budget.UNIFORM && recipe.restream() && opts.balanceSteps() > 0;
        List<LayerResult> results = new ArrayList<>();
        List<TensorMap> kept = new ArrayList<>(); // in memory: to reload a layer whose budget changes
        Calibration.ResidualStream stream = new Calibration.ResidualStream(model, calibration);
        for (int l = 0; l < model.config().numLayers(); l++) {
            if (layerwise) {
                model.loadLayer(l);
            }
            TensorMap tensors = new TensorMap();
            results.add(carveLayer(model, dense, stream, calibration, moe, opts, recipe, tensors, listener,
                    again && layerwise));
            sink.accept(tensors);
            if (layerwise) {
                model.releaseLayer(l);
            } else {
                kept.add(tensors);
            }
        }
        if (recipe.budget() == Budget.UNIFORM) {
            return new Layers(results.stream().map(LayerResult::report).toList(), moe);
        }
        Layers budgeted = withBudgets(model, results, kept, moe, opts, recipe, again);
        // budgets that came out uniform leave every layer's stream as it was balanced on
        return again && budgeted.moe().hasLayerBudgets()
                ? restream(model, dense, calibration, results, kept, budgeted, opts, recipe, listener) : budgeted;
    }

    /** Every layer's carving, and the block with the layers' budgets. */
    private record Layers(List<CarveReport.Layer> reports, MoeConfig moe) {
    }

    /**
     * One carved layer: its report, and for per-layer budgets what its balance started from (to
     * balance it again for another N_k) and its error by budget ({@link LayerBudgets#errors}), else
     * nulls; for a layerwise carve that balances again, its clustering and router (to make its
     * FFN again), else nulls.
     */
    private record LayerResult(CarveReport.Layer report, Balancing balancing, double[] errors,
                               Clustering.Result clusters, RouterFit.Rows router) {
    }

    /** A layer's balance problem: the router's s' on the balance tokens, its u, and the b it starts from. */
    private record Balancing(float[] probs, float[] scale, float[] start) {
        /** b for {@code active} routed experts per token, by the recipe's rule and the options' steps. */
        LoadBalancer.Result solve(Recipe recipe, CarveOptions opts, int active, IntConsumer progress) {
            return LoadBalancer.balance(recipe.balance(), probs, probs.length / scale.length, active, scale, start,
                    opts.balanceSteps(), opts.balanceGamma(), progress);
        }

        /** {@code carved}'s problem on the balance tokens {@code x} (tokens, d), from b = {@code start}; its loads stay at zero. */
        static Balancing of(MoeFeedForward carved, float[] x, int d, float[] start) {
            float[] probs;
            try (NDManager m = NDManager.newBaseManager()) {
                probs = carved.route(Tensors.create(m, x, x.length / d, d)).probs();
            }
            carved.resetLoads();
            return new Balancing(probs, carved.scale(), start);
        }
    }

    /**
     * Shares the routed-expert budget out over the layers by their errors, then balances again each
     * layer whose budget moved, for its own N_k. Layers were calibrated on the layers before them
     * at the uniform N_k: the budgets are known only once the last layer is carved. With
     * {@code again}, {@link #restream} balances every layer after the first afterwards, so only
     * layer 0 is balanced here.
     */
    private static Layers withBudgets(LlamaModel model, List<LayerResult> results, List<TensorMap> kept,
                                      MoeConfig moe, CarveOptions opts, Recipe recipe, boolean again) {
        double[][] errors = results.stream().map(LayerResult::errors).toArray(double[][]::new);
        int[] k = LayerBudgets.allocate(errors, moe.active() * results.size(), recipe.budget().floor(moe.active()));
        MoeConfig budgeted = moe.withActivePerLayer(k);
        List<CarveReport.Layer> reports = new ArrayList<>();
        for (int l = 0; l < results.size(); l++) {
            LayerResult r = results.get(l);
            CarveReport.Layer layer = r.report();
            if (k[l] != moe.active()) {
                if (!again || l == 0) {
                    long t = System.nanoTime();
                    LoadBalancer.Result balanced = r.balancing().solve(recipe, opts, k[l], done -> { });
                    layer = layer.rebalanced(k[l], balanced, seconds(t), 0);
                    if (!kept.isEmpty()) {
                        LayerTensors.setBias(kept.get(l), l, balanced.bias());
                    }
                }
                if (!kept.isEmpty()) {
                    model.replaceFeedForward(l, install(model, model.layerManager(l), l, kept.get(l), budgeted))
                            .close();
                }
            }
            reports.add(layer);
        }
        return new Layers(reports, budgeted);
    }

    /**
     * Balances every layer after the first again, for its own budget, on the calibration stream
     * that the budgets make. Each layer was first balanced behind the layers before it at the
     * uniform N_k, but serves behind layers that select their own numbers of experts with their
     * final biases, so its router sees other inputs there; this pass walks the stream again with
     * every carved layer as it will serve. A {@link LlamaModel#isLayerwise layerwise} model loads
     * each layer again with its carved FFN, cut once more from the dense weights by the layer's
     * clustering (the dense FFN is never loaded), and frees it after. Layer 0's input depends on
     * no carving: its balance stands.
     */
    private static Layers restream(LlamaModel model, TensorSource dense, int[][] calibration,
                                   List<LayerResult> results, List<TensorMap> kept, Layers budgeted,
                                   CarveOptions opts, Recipe recipe, CarveListener listener) {
        int d = model.config().hiddenSize();
        int layers = model.config().numLayers();
        MoeConfig moe = budgeted.moe();
        List<CarveReport.Layer> reports = new ArrayList<>(budgeted.reports());
        Calibration.ResidualStream stream = new Calibration.ResidualStream(model, calibration);
        for (int l = 0; l < layers; l++) {
            long start = System.nanoTime();
            boolean last = l == layers - 1;
            int windows = calibration.length;
            long balanceWork = l == 0 ? 0 : windows + opts.balanceSteps();
            listener.rebalanceStarted(l, layers, balanceWork + (last ? 0 : windows));
            if (model.isLayerwise()) {
                LayerResult r = results.get(l);
                float[] bias = reports.get(l).bias();
                model.loadLayer(l, (w, layer) -> reloaded(model, w.manager(), dense, layer, r, bias, moe));
            }
            MoeFeedForward carved = (MoeFeedForward) model.feedForward(l);
            LoadBalancer.Result balanced = null;
            double balancing = 0;
            if (l > 0) {
                Balancing fresh = Balancing.of(carved, stream.ffnInput(done -> listener.progress(done, "capture")), d,
                        results.get(l).balancing().start());
                long t = System.nanoTime();
                balanced = fresh.solve(recipe, opts, moe.active(l), done -> listener.progress(windows + done, "balance"));
                balancing = seconds(t);
                carved.setBias(balanced.bias());
                if (!kept.isEmpty()) {
                    LayerTensors.setBias(kept.get(l), l, balanced.bias());
                }
            }
            if (!last) { // the last layer's output reaches no layer that is balanced
                stream.advance(done -> listener.progress(balanceWork + done, "advance"));
            }
            if (model.isLayerwise()) {
                model.releaseLayer(l);
            }
            if (balanced != null) {
                reports.set(l, reports.get(l).rebalanced(moe.active(l), balanced, balancing,
                        seconds(start) - balancing));
            }
            listener.layerFinished(reports.get(l));
        }
        return new Layers(reports, moe);
    }

    /**
     * Layer {@code l}'s carved FFN made again from the dense weights into {@code manager}, as
     * {@code moe} gives the layers' budgets.
     */
    private static MoeFeedForward reloaded(LlamaModel model, NDManager manager, TensorSource dense, int l,
                                           LayerResult result, float[] bias, MoeConfig moe) {
        ModelConfig config = model.config();
        TensorMap tensors = new TensorMap();
        LayerTensors.put(tensors, l, DenseFfn.read(dense, l, config.hiddenSize(), config.intermediateSize()),
                result.clusters(), result.router());
        LayerTensors.setBias(tensors, l, bias);
        return install(model, manager, l, tensors, moe);
    }

    /**
     * Layer {@code l}'s carved FFN from {@code tensors}, into {@code manager} (the layer's own, or
     * the one a layer being loaded gets) in the model's kernels, as {@code moe} gives it.
     */
    private static MoeFeedForward install(LlamaModel model, NDManager manager, int l, TensorMap tensors,
                                          MoeConfig moe) {
        return MoeFeedForward.load(manager, tensors, l, model.config(), moe, true, model.kernels());
    }

    /** Carves layer {@code l} into {@code out} and installs it in {@code model} in place of the dense FFN. */
    private static LayerResult carveLayer(LlamaModel model, TensorSource dense,
                                                Calibration.ResidualStream stream, int[][] windows, MoeConfig moe,
                                                CarveOptions opts, Recipe recipe, TensorMap out,
                                                CarveListener listener, boolean remake) {
        ModelConfig config = model.config();
        int l = stream.layer();
        int d = config.hiddenSize();
        // the first calibSamples windows decide the carving; all of them, the balance
        int tokens = opts.calibSamples() * windows[0].length;
        int balanceTokens = windows.length * windows[0].length;
        long work = 2L * windows.length + tokens + 2L + opts.balanceSteps();
        listener.layerStarted(l, config.numLayers(), work);
        long start = System.nanoTime();

        // 1. the FFN input of this layer, with the layers before it already carved
        float[] all = stream.ffnInput(done -> listener.progress(done, "capture"));
        float[] x = balanceTokens == tokens ? all : Arrays.copyOf(all, tokens * d);
        double capture = seconds(start);
        // 2. ATopK markers of the normalised scores h, and the rates μ
        long t = System.nanoTime();
        DenseFfn ffn = DenseFfn.read(dense, l, d, config.intermediateSize());
        int base = windows.length;
        NeuronScores.Scores scores = NeuronScores.scores(x, ffn, opts.kAct(), recipe.importance(),
                recipe.grouping() == Grouping.PROFILES, done -> listener.progress(base + done, "markers"));
        MarkerMatrix markers = scores.markers();
        double[] rates = markers.rates();
        double markerSeconds = seconds(t);
        // 3–5. shared expert, balanced clustering of the rest, representatives
        t = System.nanoTime();
        Clustering.Result c = switch (recipe.grouping()) {
            case RANDOM -> Clustering.random(markers, rates, moe.shared(), moe.routed(), moe.expertSize(),
                    opts.seed() + l);
            case MARKERS -> Clustering.carve(markers, rates, moe.shared(), moe.routed(), moe.expertSize(),
                    recipe.maxPasses());
            case PROFILES -> Clustering.profiles(scores.profiles(), tokens, rates, moe.shared(), moe.routed(),
                    moe.expertSize(), recipe.maxPasses());
        };
        listener.progress(base + tokens + 1, "cluster");
        double cluster = seconds(t);
        // 6. the analytical router, u = 0 and b = 0
        t = System.nanoTime();
        RouterFit.Rows router = switch (recipe.router()) {
            case REPRESENTATIVE -> RouterFit.reference(ffn, c.representatives());
            case MEAN -> RouterFit.mean(ffn, c.experts(), c.representatives());
            // calibrated routers predict output norms, whose softmax saturates: unit spread keeps b effective
            case FITTED -> RouterFit.withUnitSpread(RouterFit.fitted(ffn, c.experts(), x), x, d);
            case LSQ -> RouterFit.withUnitSpread(RouterFit.leastSquares(ffn, c.experts(), c.representatives(), x),
                    x, d);
            case RANDOM -> RouterFit.random(d, c.representatives(), opts.seed() + l);
        };
        LayerTensors.put(out, l, ffn, c, router);
        MoeFeedForward carved = install(model, model.layerManager(l), l, out, moe);
        listener.progress(base + tokens + 2, "router");
        double routerSeconds = seconds(t);
        // load balancing of b on this layer's calibration tokens; selection only
        t = System.nanoTime();
        Balancing balancing = Balancing.of(carved, all, d, carved.bias());
        LoadBalancer.Result balanced = balancing.solve(recipe, opts, moe.active(),
                done -> listener.progress(base + tokens + 2 + done, "balance"));
        carved.setBias(balanced.bias());
        LayerTensors.setBias(out, l, balanced.bias());
        double balance = seconds(t);
        // the layer's error by budget, against the dense FFN it is about to replace
        double[] errors = recipe.budget() == Budget.UNIFORM ? null
                : LayerBudgets.errors(x, stream.residual(), balancing.probs(), d, model.feedForward(l), carved);
        // 7. the carved layer replaces the dense one before the next layer is calibrated
        model.replaceFeedForward(l, carved).close();
        int advanced = base + tokens + 2 + opts.balanceSteps();
        stream.advance(done -> listener.progress(advanced + done, "advance"));

        CarveReport.Layer report = layerReport(l, moe.active(), errors, rates, c, router, balanced,
                new CarveReport.LayerTimings(capture, markerSeconds, cluster, routerSeconds, balance, seconds(start)));
        listener.layerFinished(report);
        return new LayerResult(report, errors == null ? null : balancing, errors, remake ? c : null,
                remake ? router : null);
    }

    private static CarveReport.Layer layerReport(int l, int active, double[] errors, double[] rates,
                                                 Clustering.Result c, RouterFit.Rows router,
                                                 LoadBalancer.Result balanced, CarveReport.LayerTimings seconds) {
        float[] mu = toFloats(rates);
        float[] sharedRates = new float[c.shared().length];
        for (int i = 0; i < sharedRates.length; i++) {
            sharedRates[i] = mu[c.shared()[i]];
        }
        int[] sizes = new int[c.experts().length];
        for (int j = 0; j < sizes.length; j++) {
            sizes[j] = c.experts()[j].length;
        }
        return new CarveReport.Layer(l, mu, CarveReport.RateStats.of(mu), c.shared().length, c.shared(),
                sharedRates, sizes, c.experts(), router.representatives(), c.passes(), c.converged(),
                balanced.loadsBefore(), balanced.loadsAfter(), balanced.imbalanceBefore(), balanced.imbalanceAfter(),
                balanced.bias(), active, errors, seconds);
    }

    private static float[] toFloats(double[] v) {
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = (float) v[i];
        }
        return out;
    }

    static double seconds(long since) {
        return (System.nanoTime() - since) / 1e9;
    }
}
