package dev.cmoe.server.request;

import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.server.scheduler.GenerationRequest;
import java.nio.charset.StandardCharsets;
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
    /** Longest request id, in UTF-8 bytes: ids are echoed, logged and kept per running request. */
    public static final int MAX_REQUEST_ID_BYTES = 256;

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
        this.maxPromptBytes = tokenizer == null ? 0 : (long) context * tokenizer.maxTokenBytes();
    }

    private final long maxPromptBytes;

    /**
     * The most UTF-8 bytes a text prompt may have: the context times the most bytes one token
     * stands for. A longer text cannot fit the context whatever it says, so it is refused before
     * the tokenizer spends seconds and hundreds of MB on it.
     */
    public long maxPromptBytes() {
        return maxPromptBytes;
    }

    /** Refuses a text prompt of {@code bytes} UTF-8 bytes past {@link #maxPromptBytes()}, naming {@code field}. */
    public void checkPromptBytes(String field, long bytes) throws InvalidRequestException {
        if (tokenizer != null && bytes > maxPromptBytes) {
            throw new InvalidRequestException(field, field + " is " + bytes + " bytes, over the limit of "
                    + maxPromptBytes + " bytes (the context of " + context + " tokens × at most "
                    + tokenizer.maxTokenBytes() + " bytes per token): it cannot fit the context");
        }
    }

    /** Refuses a request id past {@link #MAX_REQUEST_ID_BYTES} UTF-8 bytes. */
    public void checkRequestIdBytes(long bytes) throws InvalidRequestException {
        if (bytes > MAX_REQUEST_ID_BYTES) {
            throw new InvalidRequestException("request_id", "request_id is " + bytes + " bytes, over the limit of "
                    + MAX_REQUEST_ID_BYTES);
        }
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
        if (r.requestId() != null) {
            checkRequestIdBytes(r.requestId().getBytes(StandardCharsets.UTF_8).length);
        }
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
            // n chars are at most 3n UTF-8 bytes: a text that short is under the limit without
            // counting (gRPC has checked its wire bytes already; most prompts take this path)
            if (3L * r.text().length() > maxPromptBytes) {
                checkPromptBytes(names.text(), utf8Length(r.text()));
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
            if (r.tokenIds().length >= context) { // before looking at every id of a huge list
                throw new InvalidRequestException(names.tokenIds(), "prompt of " + r.tokenIds().length
                        + " tokens does not fit the context of " + context
                        + " tokens (it must leave room for at least one new token)");
            }
            for (int i = 0; i < r.tokenIds().length; i++) {
                checkToken(names.tokenIds(), names.tokenIds() + "[" + i + "]", r.tokenIds()[i]);
            }
            return r.tokenIds().clone();
        }
        throw new InvalidRequestException(names.text(), "prompt is empty: set " + names.text() + " or "
                + names.tokenIds());
    }

    /** UTF-8 length without encoding a copy of the text. */
    private static long utf8Length(String s) {
        long n = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < 0x80) {
                n++;
            } else if (c < 0x800) {
                n += 2;
            } else if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                n += 4;
                i++;
            } else {
                n += 3;
            }
        }
        return n;
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
