package dev.cmoe.server.scheduler;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs scheduled steps on a {@link LlamaModel}, dense or with carved FFNs plugged in: one batched
 * forward over every entry, then each entry's own sampler on its row of logits, exactly as
 * {@link dev.cmoe.model.generate.Generator} does for a single sequence.
 */
public final class LlamaRunner implements ModelRunner {
    private final LlamaModel model;

    public LlamaRunner(LlamaModel model) {
        this.model = model;
    }

    @Override
    public KvCache newCache(int maxLength) {
        return model.newCache(maxLength);
    }

    @Override
    public long kvBytesPerToken() {
        ModelConfig c = model.config();
        return 2L * c.numLayers() * c.kvDim() * Float.BYTES;
    }

    @Override
    public int contextLength() {
        return model.config().contextLength();
    }

    @Override
    public StepOutput run(ScheduledBatch batch) {
        long start = System.nanoTime();
        Map<String, StepOutput.Sampled> sampled = new HashMap<>();
        Map<String, String> failed = new HashMap<>();
        try (NDManager step = NDManager.newBaseManager()) {
            NDArray logits;
            try {
                logits = model.forward(chunks(batch.entries()), LogitsMode.LAST, step);
            } catch (RuntimeException e) {
                if (UnavailableException.in(e)) {
                    throw e; // no capacity: every sequence would fail alike, each after the same wait
                }
                // The batched forward left every cache as it was: retry each sequence alone so that
                // one bad sequence ends only its own request.
                isolate(batch.entries(), step, sampled, failed);
                return new StepOutput(sampled, failed, System.nanoTime() - start);
            }
            for (int i = 0; i < batch.entries().size(); i++) {
                sample(batch.entries().get(i), logits.get(i), sampled, failed);
            }
        }
        return new StepOutput(sampled, failed, System.nanoTime() - start);
    }

    private void isolate(List<ScheduledBatch.Entry> entries, NDManager step, Map<String, StepOutput.Sampled> sampled,
                         Map<String, String> failed) {
        for (ScheduledBatch.Entry e : entries) {
            NDArray logits;
            try {
                logits = model.forward(chunks(List.of(e)), LogitsMode.LAST, step);
            } catch (RuntimeException ex) {
                failed.put(e.requestId(), "model step failed: " + message(ex));
                continue;
            }
            sample(e, logits.get(0), sampled, failed);
        }
    }

    private static List<SequenceChunk> chunks(List<ScheduledBatch.Entry> entries) {
        return entries.stream().map(e -> new SequenceChunk(e.cache(), e.tokens())).toList();
    }

    /** Chooses the entry's next token from its row of logits, if it asked for one. */
    private static void sample(ScheduledBatch.Entry e, NDArray row, Map<String, StepOutput.Sampled> sampled,
                               Map<String, String> failed) {
        if (e.sampler() == null) {
            return; // a prefill chunk that does not reach the end of the prompt
        }
        try {
            NDArray scores = row;
            if (e.banned().length > 0) {
                scores = row.duplicate();
                scores.set(new NDIndex("{}", row.getManager().create(toLongs(e.banned()))), Float.NEGATIVE_INFINITY);
            }
            int token = e.sampler().sample(scores, e.history());
            sampled.put(e.requestId(), new StepOutput.Sampled(token, e.logprobs() < 0 ? null : logprobs(row, token,
                    e.logprobs())));
        } catch (RuntimeException ex) {
            failed.put(e.requestId(), "sampling failed: " + message(ex));
        }
    }

    private static StepOutput.Logprobs logprobs(NDArray row, int token, int top) {
        NDArray lp = row.logSoftmax(0);
        float[] all = lp.toFloatArray();
        int n = Math.min(top, all.length);
        int[] ids = new int[n];
        float[] values = new float[n];
        if (n > 0) {
            long[] order = lp.argSort(0, false).get(new NDIndex(":{}", n)).toLongArray();
            for (int i = 0; i < n; i++) {
                ids[i] = (int) order[i];
                values[i] = all[ids[i]];
            }
        }
        return new StepOutput.Logprobs(all[token], ids, values);
    }

    private static long[] toLongs(int[] ids) {
        long[] out = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = ids[i];
        }
        return out;
    }

    private static String message(Throwable t) {
        return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
    }
}
