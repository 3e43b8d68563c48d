package dev.cmoe.model.sample;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Picks the next token of one sequence from its logits. Each request owns one Sampler, whose
 * random generator is seeded from the request, so a seed reproduces the same tokens whatever
 * else the server is batching. The filters run on the engine (sort, softmax, cumulative sum),
 * in the order repetition penalty → presence/frequency penalties → temperature → top-k → top-p →
 * min-p, as Hugging Face (and vLLM for the additive penalties) do. The additive penalties count only
 * the tokens this sampler chose, i.e. the generated ones, not the prompt, as OpenAI defines them.
 */
public final class Sampler {
    private final SamplingParams params;
    private final SplittableRandom random;
    private final Map<Integer, Integer> generated = new HashMap<>(); // token -> times chosen, for the additive penalties

    public Sampler(SamplingParams params) {
        this.params = params;
        this.random = new SplittableRandom(params.seed());
    }

    public SamplingParams params() {
        return params;
    }

    /**
     * Chooses a token.
     *
     * @param logits (vocab) float32 scores of the next token; not modified
     * @param history the tokens so far (prompt and generated), for the repetition penalty
     * @return the chosen token id
     */
    public int sample(NDArray logits, int[] history) {
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            NDArray l = additive(penalise(logits, history));
            if (params.isGreedy()) {
                return chosen((int) l.argMax().getLong());
            }
            l = l.div(params.temperature());
            NDArray order = l.argSort(0, false); // token ids, most likely first
            long vocab = order.getShape().get(0);
            if (params.topK() > 0 && params.topK() < vocab) {
                order = order.get(new NDIndex(":{}", params.topK()));
            }
            NDArray probs = l.get(new NDIndex("{}", order)).softmax(0);
            // top-p: keep a token while the mass before it is still below p (the first always stays)
            NDArray keep = probs.cumSum(0).sub(probs).lt(params.topP());
            if (params.minP() > 0) {
                keep = keep.logicalAnd(probs.gte(probs.get(0).mul(params.minP())));
            }
            NDArray cumulative = probs.mul(keep.toType(DataType.FLOAT32, false)).cumSum(0);
            double total = cumulative.get(-1).getFloat();
            double u = random.nextDouble() * total;
            long rank = cumulative.lt(u).sum().getLong();
            return chosen((int) order.get(Math.min(rank, order.getShape().get(0) - 1)).getLong());
        }
    }

    private int chosen(int token) {
        if (params.hasAdditivePenalties()) {
            generated.merge(token, 1, Integer::sum);
        }
        return token;
    }

    /** OpenAI's penalties: logit − frequency × count − presence × (count > 0), over the generated tokens. */
    private NDArray additive(NDArray logits) {
        if (!params.hasAdditivePenalties() || generated.isEmpty()) {
            return logits;
        }
        long[] ids = new long[generated.size()];
        float[] delta = new float[ids.length];
        int i = 0;
        for (Map.Entry<Integer, Integer> e : generated.entrySet()) {
            ids[i] = e.getKey();
            delta[i++] = (float) (params.frequencyPenalty() * e.getValue() + params.presencePenalty());
        }
        NDManager m = logits.getManager();
        NDArray idx = m.create(ids);
        NDArray copy = logits.duplicate();
        copy.set(new NDIndex("{}", idx), logits.get(new NDIndex("{}", idx)).sub(m.create(delta)));
        return copy;
    }

    /** HF repetition penalty: a seen token's logit is divided by the penalty if positive, multiplied if negative. */
    private NDArray penalise(NDArray logits, int[] history) {
        if (params.repetitionPenalty() == 1 || history.length == 0) {
            return logits;
        }
        long[] seen = Arrays.stream(history).distinct().asLongStream().toArray();
        NDManager m = logits.getManager();
        NDArray idx = m.create(seen);
        NDArray picked = logits.get(new NDIndex("{}", idx));
        NDArray penalised = NDArrays.where(picked.gt(0),
                picked.div(params.repetitionPenalty()), picked.mul(params.repetitionPenalty()));
        NDArray copy = logits.duplicate();
        copy.set(new NDIndex("{}", idx), penalised);
        return copy;
    }
}
