package dev.cmoe.model.sample;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token of one sequence from its logits. Each request owns one Sampler, whose
 * random generator is seeded from the request, so a seed reproduces the same tokens whatever
 * else the server is batching. The filters run on the engine (sort, softmax, cumulative sum),
 * in the order repetition penalty → temperature → top-k → top-p → min-p, as Hugging Face does.
 */
public final class Sampler {
    private final SamplingParams params;
    private final SplittableRandom random;

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
            NDArray l = penalise(logits, history);
            if (params.isGreedy()) {
                return (int) l.argMax().getLong();
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
            return (int) order.get(Math.min(rank, order.getShape().get(0) - 1)).getLong();
        }
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
