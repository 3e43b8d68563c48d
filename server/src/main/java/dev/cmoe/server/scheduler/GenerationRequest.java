package dev.cmoe.server.scheduler;

import dev.cmoe.model.sample.SamplingParams;
import java.util.List;
import java.util.Set;

/**
 * A generation request after validation, in the scheduler's terms: token ids and limits, no
 * wire types, so the scheduler can be driven by tests and other front ends alike.
 *
 * @param prompt token ids, non-empty, shorter than the context
 * @param maxNewTokens tokens to generate at most; prompt + maxNewTokens fits the context
 * @param minNewTokens stop tokens are banned until this many tokens were generated
 * @param stopStrings generation ends before the first occurrence of any of these in the text
 * @param stopTokenIds generation ends after any of these tokens (EOS already included unless ignored)
 * @param logprobs top alternatives to report per token, or -1 for no logprobs at all
 * @param arrivalNanos {@link System#nanoTime()} at arrival, for queue time and time to first token
 */
public record GenerationRequest(String requestId, int[] prompt, int maxNewTokens, int minNewTokens,
                                SamplingParams sampling, List<String> stopStrings, Set<Integer> stopTokenIds,
                                int logprobs, long arrivalNanos) {

    public GenerationRequest {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("request " + requestId + " has an empty prompt");
        }
        if (maxNewTokens <= 0) {
            throw new IllegalArgumentException("request " + requestId + ": max new tokens must be > 0, got "
                    + maxNewTokens);
        }
        stopStrings = List.copyOf(stopStrings);
        stopTokenIds = Set.copyOf(stopTokenIds);
    }

    /** A greedy request with EOS {@code eos} as its only stop token: the shape most tests need. */
    public static GenerationRequest greedy(String requestId, int[] prompt, int maxNewTokens, Set<Integer> stops) {
        return new GenerationRequest(requestId, prompt, maxNewTokens, 0, SamplingParams.greedy(), List.of(), stops,
                -1, System.nanoTime());
    }
}
