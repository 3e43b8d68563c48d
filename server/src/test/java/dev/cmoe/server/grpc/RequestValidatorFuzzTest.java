package dev.cmoe.server.grpc;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.server.scheduler.GenerationRequest;
import io.grpc.Status;
import io.grpc.StatusException;

/**
 * Coverage-guided fuzzing of the request validator on the real tokenizer: any GenerateRequest
 * either becomes a request that fits the context and the vocabulary, or is refused with
 * INVALID_ARGUMENT and a message; nothing else escapes. Bytes that are not a GenerateRequest at
 * all are the {@link EdgeGuard}'s business (EdgeGuardTest). Regression inputs live in
 * {@code src/test/resources/dev/cmoe/server/grpc/RequestValidatorFuzzTestInputs/}.
 */
class RequestValidatorFuzzTest {
    private static final int CONTEXT = TinyServer.model().config().maxPositionEmbeddings();
    private static final int VOCAB = TinyServer.model().config().vocabSize();
    private static final RequestValidator VALIDATOR = new RequestValidator(TinyServer.model().tokenizer(), VOCAB,
            CONTEXT, TinyServer.eos());

    @FuzzTest(maxDuration = "5s")
    void validate(byte[] bytes) {
        GenerateRequest request;
        try {
            request = GenerateRequest.parseFrom(bytes);
        } catch (InvalidProtocolBufferException notARequest) {
            return;
        }
        GenerationRequest r;
        try {
            r = VALIDATOR.validate(request, 0);
        } catch (StatusException e) {
            if (e.getStatus().getCode() != Status.Code.INVALID_ARGUMENT || e.getStatus().getDescription() == null
                    || e.getStatus().getDescription().isBlank()) {
                throw new AssertionError("refused with " + e.getStatus(), e);
            }
            return;
        }
        int prompt = r.prompt().length;
        if (prompt == 0 || prompt >= CONTEXT || r.maxNewTokens() < 1 || prompt + r.maxNewTokens() > CONTEXT) {
            throw new AssertionError("accepted a prompt of " + prompt + " tokens + " + r.maxNewTokens()
                    + " new in a context of " + CONTEXT);
        }
        for (int id : r.prompt()) {
            if (id < 0 || id >= VOCAB) {
                throw new AssertionError("accepted token id " + id);
            }
        }
    }
}
