package dev.cmoe.server.request;

import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.server.scheduler.GenerationRequest;
import java.util.HashSet;
import java.util.Set;
import java.util.UUID;

/**
 * Turns a {@link RequestSpec} into a {@link GenerationRequest} or an {@link InvalidRequestException}
 * that names the field and its value. Every front end (gRPC, HTTP) validates here, once, so the
 * rules cannot drift apart and nothing past the edge can fail on user input.
 */
public final class RequestRules {
    /** Most logprob alternatives a client may ask for per token. */
    public static final int MAX_LOGPROBS = 20;

    private final TextTokenizer tokenizer; // null: token-id prompts only
    private final int vocabSize;
    private final int context;
    private final Set<Integer> eosIds;

    /**
     * @param tokenizer encodes text prompts; null when the server takes token ids only
     * @param eosIds the model's end-of-sequence ids, stop tokens unless a request ignores them
     */
    public RequestRules(TextTokenizer tokenizer, int vocabSize, int context, Set<Integer> eosIds) {
        this.tokenizer = tokenizer;
        this.vocabSize = vocabSize;
        this.context = context;
        this.eosIds = Set.copyOf(eosIds);
    }

    /** The tokenizer text prompts go through, or null. */
    public TextTokenizer tokenizer() {
        return tokenizer;
    }

    /** The model's context length in tokens. */
    public int context() {
        return context;
    }

    /** Validates {@code r}; a missing request id is replaced by a fresh one. */
    public GenerationRequest validate(RequestSpec r, long arrivalNanos) throws InvalidRequestException {
        RequestSpec.Names names = r.names();
        String id = r.requestId() == null || r.requestId().isEmpty() ? UUID.randomUUID().toString() : r.requestId();
        int[] prompt = prompt(r);
        String promptField = r.text() != null ? names.text() : names.tokenIds();
        if (prompt.length >= context) {
            throw new InvalidRequestException(promptField, "prompt of " + prompt.length
                    + " tokens does not fit the context of " + context
                    + " tokens (it must leave room for at least one new token)");
        }
        int room = context - prompt.length;
        int maxNew = room;
        if (r.maxNewTokens() != null) {
            maxNew = r.maxNewTokens();
            if (maxNew <= 0) {
                throw new InvalidRequestException(names.maxNewTokens(), names.maxNewTokens() + " must be > 0, got "
                        + maxNew);
            }
            if (maxNew > room) {
                throw new InvalidRequestException(names.maxNewTokens(), names.maxNewTokens() + " = " + maxNew
                        + " goes past the context: prompt of " + prompt.length + " tokens + " + maxNew + " > "
                        + context);
            }
        }
        int minNew = r.minNewTokens();
        if (minNew < 0 || minNew > maxNew) {
            throw new InvalidRequestException("min_new_tokens", "min_new_tokens must be in [0, "
                    + names.maxNewTokens() + " = " + maxNew + "], got " + minNew);
        }
        SamplingParams sampling = sampling(r);
        for (int i = 0; i < r.stopStrings().size(); i++) {
            if (r.stopStrings().get(i).isEmpty()) {
                throw new InvalidRequestException(names.stop(), names.stop() + "[" + i + "] is empty");
            }
        }
        Set<Integer> stopIds = new HashSet<>(r.ignoreEos() ? Set.of() : eosIds);
        for (int i = 0; i < r.stopTokenIds().size(); i++) {
            stopIds.add(checkToken(names.stopTokenIds(), names.stopTokenIds() + "[" + i + "]",
                    r.stopTokenIds().get(i)));
        }
        int logprobs = -1;
        if (r.logprobs() != null) {
            logprobs = r.logprobs();
            if (logprobs < 0 || logprobs > MAX_LOGPROBS) {
                throw new InvalidRequestException(names.logprobs(), names.logprobs() + " must be in [0, "
                        + MAX_LOGPROBS + "], got " + logprobs);
            }
        }
        return new GenerationRequest(id, prompt, maxNew, minNew, sampling, r.stopStrings(), stopIds, logprobs,
                arrivalNanos);
    }

    private int[] prompt(RequestSpec r) throws InvalidRequestException {
        RequestSpec.Names names = r.names();
        if (r.text() != null) {
            if (r.text().isEmpty()) {
                throw new InvalidRequestException(names.text(), names.text() + " is empty");
            }
            if (tokenizer == null) {
                throw new InvalidRequestException(names.text(), names.text()
                        + " is not accepted: this server has no tokenizer, send " + names.tokenIds());
            }
            int[] ids = tokenizer.encodeIds(r.text(), r.addBos());
            if (ids.length == 0) {
                throw new InvalidRequestException(names.text(), names.text() + " encodes to no tokens");
            }
            return ids;
        }
        if (r.tokenIds() != null) {
            if (r.tokenIds().length == 0) {
                throw new InvalidRequestException(names.tokenIds(), names.tokenIds() + " is empty");
            }
            for (int i = 0; i < r.tokenIds().length; i++) {
                checkToken(names.tokenIds(), names.tokenIds() + "[" + i + "]", r.tokenIds()[i]);
            }
            return r.tokenIds().clone();
        }
        throw new InvalidRequestException(names.text(), "prompt is empty: set " + names.text() + " or "
                + names.tokenIds());
    }

    private static SamplingParams sampling(RequestSpec r) throws InvalidRequestException {
        double temperature = r.temperature();
        if (!(temperature >= 0) || Double.isInfinite(temperature)) {
            throw new InvalidRequestException("temperature", "temperature must be >= 0 (0 is greedy), got "
                    + temperature);
        }
        if (r.topK() < 0) {
            throw new InvalidRequestException("top_k", "top_k must be >= 0 (0 disables it), got " + r.topK());
        }
        double topP = r.topP() != null ? r.topP() : 1.0;
        if (!(topP > 0 && topP <= 1)) {
            throw new InvalidRequestException("top_p", "top_p must be in (0, 1], got " + topP);
        }
        double minP = r.minP();
        if (!(minP >= 0 && minP < 1)) {
            throw new InvalidRequestException("min_p", "min_p must be in [0, 1), got " + minP);
        }
        double penalty = r.repetitionPenalty() != null ? r.repetitionPenalty() : 1.0;
        if (!(penalty > 0) || Double.isInfinite(penalty)) {
            throw new InvalidRequestException("repetition_penalty",
                    "repetition_penalty must be > 0 (1 disables it), got " + penalty);
        }
        for (String name : new String[] {"presence_penalty", "frequency_penalty"}) {
            double v = name.startsWith("presence") ? r.presencePenalty() : r.frequencyPenalty();
            if (!(Math.abs(v) <= SamplingParams.MAX_ADDITIVE_PENALTY)) {
                throw new InvalidRequestException(name, name + " must be in [-2, 2] (0 disables it), got " + v);
            }
        }
        return new SamplingParams(temperature, r.topK(), topP, minP, penalty, r.seed(), r.presencePenalty(),
                r.frequencyPenalty());
    }

    private int checkToken(String field, String element, int id) throws InvalidRequestException {
        if (id < 0 || id >= vocabSize) {
            throw new InvalidRequestException(field, element + " = " + id
                    + " is not a token id (the vocabulary has " + vocabSize + ")");
        }
        return id;
    }
}
