package dev.cmoe.model.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.cmoe.model.llama.KvCache;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.llama.LogitsMode;
import dev.cmoe.model.llama.SequenceChunk;
import dev.cmoe.model.sample.Sampler;
import dev.cmoe.model.sample.SamplingParams;
import java.util.Arrays;
import java.util.Set;
import java.util.function.IntConsumer;

/**
 * In-process generation of one prompt: prefill, then one cached decode step per token. It is
 * the CLI's offline path and the reference whose tokens the batching server must reproduce.
 */
public final class Generator {
    /** Why generation stopped. */
    public enum FinishReason { LENGTH, EOS_TOKEN }

    /** The generated tokens (prompt excluded) and why generation ended. */
    public record Result(int[] tokens, FinishReason reason) {
    }

    private Generator() {
    }

    /**
     * Generates up to {@code maxNewTokens} tokens after {@code prompt}, calling {@code onToken}
     * as each is chosen. A stop token ends generation and is reported but not counted as text.
     */
    public static Result generate(LlamaModel model, int[] prompt, int maxNewTokens, SamplingParams params,
                                  Set<Integer> stopTokens, IntConsumer onToken) {
        int context = model.config().contextLength();
        if (prompt.length == 0) {
            throw new IllegalArgumentException("prompt is empty");
        }
        if (maxNewTokens <= 0) {
            throw new IllegalArgumentException("max new tokens must be positive, got " + maxNewTokens);
        }
        if (prompt.length >= context) {
            throw new IllegalArgumentException("prompt of " + prompt.length + " tokens leaves no room in the context of "
                    + context);
        }
        int limit = Math.min(maxNewTokens, context - prompt.length);
        Sampler sampler = new Sampler(params);
        int[] history = Arrays.copyOf(prompt, prompt.length + limit);
        int length = prompt.length;
        try (NDManager m = NDManager.newBaseManager(); KvCache cache = model.newCache(prompt.length + limit)) {
            int[] next = prompt;
            while (length - prompt.length < limit) {
                int token;
                try (NDManager step = m.newSubManager()) {
                    NDArray logits = model.forward(java.util.List.of(new SequenceChunk(cache, next)),
                            LogitsMode.LAST, step);
                    token = sampler.sample(logits.get(0), Arrays.copyOf(history, length));
                }
                history[length++] = token;
                onToken.accept(token);
                if (stopTokens.contains(token)) {
                    return new Result(Arrays.copyOfRange(history, prompt.length, length), FinishReason.EOS_TOKEN);
                }
                next = new int[] {token};
            }
        }
        return new Result(Arrays.copyOfRange(history, prompt.length, length), FinishReason.LENGTH);
    }
}
