package dev.cmoe.deploy.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Engine-level speed of dense vs carved FFNs on one {@link LlamaModel}: its attention, norms and
 * head stay, and each variant's FFN blocks are swapped in, so the variants differ in nothing
 * else. Variants take turns step by step (dense, carved, dense, carved, ...), so a burst of load
 * from another process hits all of them alike, and ratios are taken per repeat, side by side.
 */
public final class EngineBench {
    /**
     * A model variant: one FFN per layer swapped into the bench's model, or a model of its own
     * (another dtype of the same weights) that runs as it is when {@code ffns} is null; with
     * {@code threads} set, the engine's intra-op thread count is set to it before each of its
     * steps, so thread counts can take turns like any other variant; with {@code scripted} false
     * its cached steps run the Java operations that the layer script replaces.
     */
    public record Variant(String name, LlamaModel model, List<FeedForward> ffns, Integer threads, boolean scripted) {
        public Variant(String name, List<FeedForward> ffns) {
            this(name, null, ffns, null, true);
        }

        /** A whole model, run as loaded. */
        public static Variant of(String name, LlamaModel model) {
            return new Variant(name, model, null, null, true);
        }

        /** {@code model} run with {@code threads} intra-op threads. */
        public static Variant withThreads(String name, LlamaModel model, int threads) {
            return new Variant(name, model, null, threads, true);
        }

        /** This variant with its steps run as the Java operations, not the layer script: the path before the script. */
        public Variant javaOps() {
            return new Variant(name + " (Java ops)", model, ffns, threads, false);
        }

        LlamaModel in(LlamaModel bench) {
            LlamaModel m = model == null ? bench : model;
            if (ffns != null) {
                install(m, this);
            }
            if (threads != null) {
                JniUtils.setNumThreads(threads);
            }
            m.setScripted(scripted);
            return m;
        }
    }

    /** Tokens per second of each variant in each repeat, by batch size. */
    public record Decode(int batch, Map<String, double[]> tokensPerSecond) {
        public double median(String variant) {
            return EngineBench.median(tokensPerSecond.get(variant));
        }

        /** The median over repeats of variant / base, each repeat's pair measured back to back. */
        public double ratio(String variant, String base) {
            double[] a = tokensPerSecond.get(variant);
            double[] b = tokensPerSecond.get(base);
            double[] r = new double[a.length];
            for (int i = 0; i < r.length; i++) {
                r[i] = a[i] / b[i];
            }
            return EngineBench.median(r);
        }

        public double[] range(String variant, String base) {
            double[] a = tokensPerSecond.get(variant);
            double[] b = tokensPerSecond.get(base);
            double lo = Double.MAX_VALUE;
            double hi = 0;
            for (int i = 0; i < a.length; i++) {
                lo = Math.min(lo, a[i] / b[i]);
                hi = Math.max(hi, a[i] / b[i]);
            }
            return new double[] {lo, hi};
        }
    }

    private EngineBench() {
    }

    /**
     * Decode throughput: per variant, {@code batch} sequences each prefilled with {@code prompt}
     * tokens, then {@code steps} timed decode steps of one token per sequence. The variants take
     * turns step by step (each with its own caches), so a burst of load from another process
     * lands on all of them alike and the ratio between them stays meaningful on a busy machine.
     *
     * @return per batch size, each variant's tokens/s in each of {@code repeats} repeats
     */
    public static List<Decode> decode(LlamaModel model, List<Variant> variants, int[] batches, int prompt, int steps,
                                      int repeats, Runnable tick) {
        int threads = JniUtils.getNumThreads(); // variants with their own count change it: put it back after
        try {
            return decodeAll(model, variants, batches, prompt, steps, repeats, tick);
        } finally {
            JniUtils.setNumThreads(threads);
        }
    }

    private static List<Decode> decodeAll(LlamaModel model, List<Variant> variants, int[] batches, int prompt,
                                          int steps, int repeats, Runnable tick) {
        List<Decode> out = new ArrayList<>();
        for (int batch : batches) {
            Map<String, double[]> tps = new LinkedHashMap<>();
            variants.forEach(v -> tps.put(v.name(), new double[repeats]));
            for (int rep = 0; rep < repeats; rep++) {
                double[] t = decodeInterleaved(model, variants, batch, prompt, steps, rep);
                for (int i = 0; i < variants.size(); i++) {
                    tps.get(variants.get(i).name())[rep] = t[i];
                }
                tick.run();
            }
            out.add(new Decode(batch, tps));
        }
        return out;
    }

    /** Puts {@code v}'s FFNs into {@code model} (the previous ones stay open: they belong to their variant). */
    public static void install(LlamaModel model, Variant v) {
        for (int l = 0; l < v.ffns().size(); l++) {
            model.replaceFeedForward(l, v.ffns().get(l));
        }
    }

    /** Tokens per second of each variant, their decode steps interleaved. */
    static double[] decodeInterleaved(LlamaModel model, List<Variant> variants, int batch, int prompt, int steps,
                                      long seed) {
        int vocab = model.config().vocabSize();
        SplittableRandom r = new SplittableRandom(seed);
        int[][] prompts = new int[batch][];
        for (int b = 0; b < batch; b++) {
            prompts[b] = r.ints(prompt, 0, vocab).toArray();
        }
        List<List<KvCache>> caches = new ArrayList<>();
        long[] nanos = new long[variants.size()];
        try (NDManager out = NDManager.newBaseManager()) {
            for (Variant v : variants) {
                LlamaModel m = v.in(model);
                List<KvCache> own = new ArrayList<>();
                caches.add(own);
                List<SequenceChunk> prefill = new ArrayList<>();
                for (int b = 0; b < batch; b++) {
                    KvCache c = m.newCache(prompt + steps + 2);
                    own.add(c);
                    prefill.add(new SequenceChunk(c, prompts[b]));
                }
                m.forward(prefill, LogitsMode.LAST, out).close();
            }
            for (int s = -2; s < steps; s++) { // two untimed steps first
                int[] next = r.ints(batch, 0, vocab).toArray();
                for (int i = 0; i < variants.size(); i++) {
                    LlamaModel m = variants.get(i).in(model);
                    List<SequenceChunk> step = new ArrayList<>(batch);
                    for (int b = 0; b < batch; b++) {
                        step.add(new SequenceChunk(caches.get(i).get(b), new int[] {next[b]}));
                    }
                    long t = System.nanoTime();
                    m.forward(step, LogitsMode.LAST, out).close();
                    if (s >= 0) {
                        nanos[i] += System.nanoTime() - t;
                    }
                }
            }
        } finally {
            caches.forEach(l -> l.forEach(KvCache::close));
        }
        double[] tps = new double[variants.size()];
        for (int i = 0; i < tps.length; i++) {
            tps[i] = (double) batch * steps / (nanos[i] / 1e9);
        }
        return tps;
    }

    /**
     * FFN-only time per token in microseconds: {@code iterations} forwards of a (batch, hidden)
     * input through each variant's layer-0 FFN, in turn within each repeat.
     *
     * @return variant -> microseconds per token of each repeat
     */
    public static Map<String, double[]> ffnMicrosPerToken(List<Variant> variants, int hidden, int batch,
                                                          int iterations, int repeats) {
        Map<String, double[]> us = new LinkedHashMap<>();
        variants.forEach(v -> us.put(v.name(), new double[repeats]));
        try (NDManager m = NDManager.newBaseManager()) {
            SplittableRandom r = new SplittableRandom(batch);
            float[] data = new float[batch * hidden];
            for (int i = 0; i < data.length; i++) {
                data[i] = (float) r.nextGaussian();
            }
            NDArray x = m.create(data, new Shape(batch, hidden));
            for (Variant v : variants) {
                for (int w = 0; w < 2; w++) {
                    run(v.ffns().getFirst(), x);
                }
            }
            for (int rep = 0; rep < repeats; rep++) {
                long[] nanos = new long[variants.size()];
                for (int i = 0; i < iterations; i++) {
                    for (int k = 0; k < variants.size(); k++) { // interleaved, as for decode
                        long t = System.nanoTime();
                        run(variants.get(k).ffns().getFirst(), x);
                        nanos[k] += System.nanoTime() - t;
                    }
                }
                for (int k = 0; k < variants.size(); k++) {
                    us.get(variants.get(k).name())[rep] = nanos[k] / 1e3 / iterations / batch;
                }
            }
        }
        return us;
    }

    /**
     * Engine calls of one forward of each variant's layer-0 FFN on a random (batch, hidden)
     * input, counted by {@link EngineCalls}.
     *
     * @return variant → calls for each of {@code batches}
     */
    public static Map<String, long[]> engineCalls(List<Variant> variants, int hidden, int[] batches) {
        Map<String, long[]> calls = new LinkedHashMap<>();
        variants.forEach(v -> calls.put(v.name(), new long[batches.length]));
        try (NDManager m = NDManager.newBaseManager()) {
            for (int b = 0; b < batches.length; b++) {
                NDArray x = m.randomNormal(new Shape(batches[b], hidden));
                for (Variant v : variants) {
                    calls.get(v.name())[b] = EngineCalls.of(v.ffns().getFirst(), x);
                }
            }
        }
        return calls;
    }

    private static void run(FeedForward ffn, NDArray x) {
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            ffn.forward(x).toFloatArray(); // wait for the result, as the next layer would
        }
    }

    /** The median of {@code v} (the mean of the middle two for an even count); the benchmarks' one. */
    public static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
