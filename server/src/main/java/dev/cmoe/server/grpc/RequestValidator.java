package dev.cmoe.server.grpc;

import com.google.protobuf.ByteString;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.server.scheduler.GenerationRequest;
import io.grpc.Status;
import io.grpc.StatusException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;

/**
 * Turns a wire request into a {@link GenerationRequest}, or an INVALID_ARGUMENT status that names
 * the field and its value. Everything is checked here, once, so nothing past the edge can fail on
 * user input.
 */
public final class RequestValidator {
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
    public RequestValidator(TextTokenizer tokenizer, int vocabSize, int context, Set<Integer> eosIds) {
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

    /** Validates {@code r}; a missing request id is replaced by a fresh one. */
    public GenerationRequest validate(GenerateRequest r, long arrivalNanos) throws StatusException {
        if (r.getRequestIdBytes().size() > MAX_REQUEST_ID_BYTES) {
            throw invalid("request_id is " + r.getRequestIdBytes().size() + " bytes, over the limit of "
                    + MAX_REQUEST_ID_BYTES);
        }
        String id = r.getRequestId().isEmpty() ? UUID.randomUUID().toString() : r.getRequestId();
        int[] prompt = prompt(r);
        if (prompt.length >= context) {
            throw invalid("prompt of " + prompt.length + " tokens does not fit the context of " + context
                    + " tokens (it must leave room for at least one new token)");
        }
        int room = context - prompt.length;
        int maxNew = room;
        if (r.hasMaxNewTokens()) {
            maxNew = r.getMaxNewTokens();
            if (maxNew <= 0) {
                throw invalid("max_new_tokens must be > 0, got " + maxNew);
            }
            if (maxNew > room) {
                throw invalid("max_new_tokens = " + maxNew + " goes past the context: prompt of " + prompt.length
                        + " tokens + " + maxNew + " > " + context);
            }
        }
        int minNew = r.getMinNewTokens();
        if (minNew < 0 || minNew > maxNew) {
            throw invalid("min_new_tokens must be in [0, max_new_tokens = " + maxNew + "], got " + minNew);
        }
        SamplingParams sampling = sampling(r);
        List<String> stops = new ArrayList<>();
        for (int i = 0; i < r.getStopCount(); i++) {
            ByteString b = r.getStopBytes(i);
            if (!b.isValidUtf8()) {
                throw invalid("stop[" + i + "] is not valid UTF-8");
            }
            if (b.isEmpty()) {
                throw invalid("stop[" + i + "] is empty");
            }
            stops.add(b.toStringUtf8());
        }
        Set<Integer> stopIds = new HashSet<>(r.getIgnoreEos() ? Set.of() : eosIds);
        for (int i = 0; i < r.getStopTokenIdsCount(); i++) {
            stopIds.add(checkToken("stop_token_ids[" + i + "]", r.getStopTokenIds(i)));
        }
        int logprobs = -1;
        if (r.hasLogprobs()) {
            logprobs = r.getLogprobs();
            if (logprobs < 0 || logprobs > MAX_LOGPROBS) {
                throw invalid("logprobs must be in [0, " + MAX_LOGPROBS + "], got " + logprobs);
            }
        }
        return new GenerationRequest(id, prompt, maxNew, minNew, sampling, stops, stopIds, logprobs, arrivalNanos);
    }

    private int[] prompt(GenerateRequest r) throws StatusException {
        switch (r.getPromptCase()) {
            case TEXT -> {
                ByteString b = r.getTextBytes();
                if (tokenizer != null && b.size() > maxPromptBytes) {
                    throw invalid("prompt.text is " + b.size() + " bytes, over the limit of " + maxPromptBytes
                            + " bytes (the context of " + context + " tokens × at most " + tokenizer.maxTokenBytes()
                            + " bytes per token): it cannot fit the context");
                }
                if (!b.isValidUtf8()) {
                    throw invalid("prompt.text is not valid UTF-8");
                }
                if (b.isEmpty()) {
                    throw invalid("prompt.text is empty");
                }
                if (tokenizer == null) {
                    throw invalid("prompt.text is not accepted: this server has no tokenizer, send prompt.token_ids");
                }
                int[] ids = tokenizer.encodeIds(b.toStringUtf8(), !r.getSkipBos());
                if (ids.length == 0) {
                    throw invalid("prompt.text encodes to no tokens");
                }
                return ids;
            }
            case TOKEN_IDS -> {
                List<Integer> ids = r.getTokenIds().getIdsList();
                if (ids.isEmpty()) {
                    throw invalid("prompt.token_ids is empty");
                }
                if (ids.size() >= context) {
                    throw invalid("prompt of " + ids.size() + " tokens does not fit the context of " + context
                            + " tokens (it must leave room for at least one new token)");
                }
                int[] out = new int[ids.size()];
                for (int i = 0; i < out.length; i++) {
                    out[i] = checkToken("prompt.token_ids[" + i + "]", ids.get(i));
                }
                return out;
            }
            default -> throw invalid("prompt is empty: set prompt.text or prompt.token_ids");
        }
    }

    private static SamplingParams sampling(GenerateRequest r) throws StatusException {
        double temperature = r.getTemperature();
        if (!(temperature >= 0) || Double.isInfinite(temperature)) {
            throw invalid("temperature must be >= 0 (0 is greedy), got " + temperature);
        }
        if (r.getTopK() < 0) {
            throw invalid("top_k must be >= 0 (0 disables it), got " + r.getTopK());
        }
        double topP = r.hasTopP() ? r.getTopP() : 1.0;
        if (!(topP > 0 && topP <= 1)) {
            throw invalid("top_p must be in (0, 1], got " + topP);
        }
        double minP = r.getMinP();
        if (!(minP >= 0 && minP < 1)) {
            throw invalid("min_p must be in [0, 1), got " + minP);
        }
        double penalty = r.hasRepetitionPenalty() ? r.getRepetitionPenalty() : 1.0;
        if (!(penalty > 0) || Double.isInfinite(penalty)) {
            throw invalid("repetition_penalty must be > 0 (1 disables it), got " + penalty);
        }
        return new SamplingParams(temperature, r.getTopK(), topP, minP, penalty, r.getSeed());
    }

    private int checkToken(String field, int id) throws StatusException {
        if (id < 0 || id >= vocabSize) {
            throw invalid(field + " = " + id + " is not a token id (the vocabulary has " + vocabSize + ")");
        }
        return id;
    }

    private static StatusException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription(message).asException();
    }
}
