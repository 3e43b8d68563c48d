package dev.cmoe.server.request;

import java.util.List;

/**
 * A generation request as every front end hands it to {@link RequestRules}: the values the client
 * sent (null where it sent none) and the names it knows the renamed fields by, so that one set of
 * rules serves gRPC and the OpenAI-compatible HTTP API and each error names the client's field.
 *
 * @param requestId the client's id, or null for a fresh one
 * @param text the prompt as text, or null when {@code tokenIds} carries it
 * @param tokenIds the prompt as token ids, or null
 * @param addBos whether the tokenizer puts BOS before {@code text}
 * @param maxNewTokens null: up to the end of the context
 * @param topP null: 1
 * @param repetitionPenalty null: 1
 * @param presencePenalty OpenAI's additive penalties (0 = off), which gRPC does not carry
 * @param stopStrings non-empty strings that end generation (not reported)
 * @param stopTokenIds tokens that end generation besides EOS
 * @param ignoreEos EOS does not end generation
 * @param logprobs alternatives per token to report, or null for none
 */
public record RequestSpec(String requestId, String text, int[] tokenIds, boolean addBos, Integer maxNewTokens,
                          int minNewTokens, double temperature, int topK, Double topP, double minP,
                          Double repetitionPenalty, long seed, double presencePenalty, double frequencyPenalty,
                          List<String> stopStrings, List<Integer> stopTokenIds,
                          boolean ignoreEos, Integer logprobs, Names names) {

    public RequestSpec {
        stopStrings = List.copyOf(stopStrings);
        stopTokenIds = List.copyOf(stopTokenIds);
    }

    /** The same request under {@code id}. */
    public RequestSpec withRequestId(String id) {
        return new RequestSpec(id, text, tokenIds, addBos, maxNewTokens, minNewTokens, temperature, topK, topP, minP,
                repetitionPenalty, seed, presencePenalty, frequencyPenalty, stopStrings, stopTokenIds, ignoreEos,
                logprobs, names);
    }

    /**
     * What the client calls the fields whose names differ between APIs.
     *
     * @param text the text prompt ("prompt.text", "prompt", "messages")
     * @param tokenIds the token-id prompt
     * @param maxNewTokens "max_new_tokens", "max_tokens" or "max_completion_tokens"
     * @param logprobs "logprobs" or "top_logprobs"
     */
    public record Names(String text, String tokenIds, String maxNewTokens, String logprobs, String stop,
                        String stopTokenIds) {
        /** The names of the cmoe.v1 gRPC API. */
        public static final Names GRPC = new Names("prompt.text", "prompt.token_ids", "max_new_tokens", "logprobs",
                "stop", "stop_token_ids");

        public Names withMaxNewTokens(String name) {
            return new Names(text, tokenIds, name, logprobs, stop, stopTokenIds);
        }
    }
}
