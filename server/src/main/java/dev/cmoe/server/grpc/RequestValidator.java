package dev.cmoe.server.grpc;

import com.google.protobuf.ByteString;
import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.server.request.InvalidRequestException;
import dev.cmoe.server.request.RequestRules;
import dev.cmoe.server.request.RequestSpec;
import dev.cmoe.server.scheduler.GenerationRequest;
import io.grpc.Status;
import io.grpc.StatusException;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * Turns a wire request into a {@link GenerationRequest}, or an INVALID_ARGUMENT status that names
 * the field and its value. The rules are {@link RequestRules}, shared with the HTTP API; this class
 * only reads the protobuf message (and its UTF-8, which only the wire can get wrong).
 */
public final class RequestValidator {
    /** Most logprob alternatives a client may ask for per token. */
    public static final int MAX_LOGPROBS = RequestRules.MAX_LOGPROBS;
    /** Longest request id, in UTF-8 bytes: ids are echoed, logged and kept per running request. */
    public static final int MAX_REQUEST_ID_BYTES = RequestRules.MAX_REQUEST_ID_BYTES;

    private final RequestRules rules;

    /**
     * @param tokenizer encodes text prompts; null when the server takes token ids only
     * @param eosIds the model's end-of-sequence ids, stop tokens unless a request ignores them
     */
    public RequestValidator(TextTokenizer tokenizer, int vocabSize, int context, Set<Integer> eosIds) {
        this(new RequestRules(tokenizer, vocabSize, context, eosIds));
    }

    public RequestValidator(RequestRules rules) {
        this.rules = rules;
    }

    /** See {@link RequestRules#maxPromptBytes()}: the transport sizes its message limit from it. */
    public long maxPromptBytes() {
        return rules.maxPromptBytes();
    }

    /** The wire-neutral rules, for the other front ends. */
    public RequestRules rules() {
        return rules;
    }

    /** Validates {@code r}; a missing request id is replaced by a fresh one. */
    public GenerationRequest validate(GenerateRequest r, long arrivalNanos) throws StatusException {
        try {
            return rules.validate(spec(r), arrivalNanos);
        } catch (InvalidRequestException e) {
            throw invalid(e.getMessage());
        }
    }

    private RequestSpec spec(GenerateRequest r) throws StatusException, InvalidRequestException {
        // sizes are checked on the wire bytes, before anything is decoded or copied
        rules.checkRequestIdBytes(r.getRequestIdBytes().size());
        String text = null;
        int[] ids = null;
        switch (r.getPromptCase()) {
            case TEXT -> {
                ByteString b = r.getTextBytes();
                rules.checkPromptBytes("prompt.text", b.size());
                if (!b.isValidUtf8()) {
                    throw invalid("prompt.text is not valid UTF-8");
                }
                text = b.toStringUtf8();
            }
            case TOKEN_IDS -> ids = r.getTokenIds().getIdsList().stream().mapToInt(Integer::intValue).toArray();
            default -> throw invalid("prompt is empty: set prompt.text or prompt.token_ids");
        }
        List<String> stops = new ArrayList<>();
        for (int i = 0; i < r.getStopCount(); i++) {
            ByteString b = r.getStopBytes(i);
            if (!b.isValidUtf8()) {
                throw invalid("stop[" + i + "] is not valid UTF-8");
            }
            stops.add(b.toStringUtf8());
        }
        return new RequestSpec(r.getRequestId(), text, ids, !r.getSkipBos(),
                r.hasMaxNewTokens() ? r.getMaxNewTokens() : null, r.getMinNewTokens(), r.getTemperature(),
                r.getTopK(), r.hasTopP() ? r.getTopP() : null, r.getMinP(),
                r.hasRepetitionPenalty() ? r.getRepetitionPenalty() : null, r.getSeed(), 0, 0, stops,
                r.getStopTokenIdsList(), r.getIgnoreEos(), r.hasLogprobs() ? r.getLogprobs() : null,
                RequestSpec.Names.GRPC);
    }

    private static StatusException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription(message).asException();
    }
}
