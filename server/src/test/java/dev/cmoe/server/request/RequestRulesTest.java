package dev.cmoe.server.request;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.model.testing.Environment;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The bounds every front end shares are checked in the rules, so HTTP and gRPC refuse alike and before tokenising. */
class RequestRulesTest {
    private static TextTokenizer tokenizer;
    private static RequestRules rules;
    private static final RequestSpec.Names HTTP = new RequestSpec.Names("prompt", "prompt", "max_tokens", "logprobs",
            "stop", "stop_token_ids");

    @BeforeAll
    static void load() throws Exception {
        tokenizer = TextTokenizer.load(Environment.repoRoot().resolve("models/brown-llama"));
        rules = new RequestRules(tokenizer, 4096, 256, Set.of(1));
    }

    @AfterAll
    static void close() {
        tokenizer.close();
    }

    private static RequestSpec spec(String id, String text, int[] ids) {
        return new RequestSpec(id, text, ids, true, null, 0, 0, 0, null, 0, null, 0, 0, 0, List.of(), List.of(),
                false, null, HTTP);
    }

    @Test
    void aTextPromptPastTheByteLimitIsRefusedNamingTheFieldAndLimit() throws Exception {
        long limit = rules.maxPromptBytes();
        assertEquals(256L * tokenizer.maxTokenBytes(), limit);
        InvalidRequestException e = assertThrows(InvalidRequestException.class,
                () -> rules.validate(spec(null, "é".repeat((int) (limit / 2) + 1), null), 0));
        assertEquals("prompt", e.field());
        assertTrue(e.getMessage().contains("over the limit of " + limit + " bytes"), e.getMessage());
        // a short one goes through
        assertTrue(rules.validate(spec(null, "The jury said", null), 0).prompt().length > 1);
    }

    @Test
    void longRequestIdsAndTokenListsPastTheContextAreRefused() {
        InvalidRequestException id = assertThrows(InvalidRequestException.class,
                () -> rules.validate(spec("x".repeat(RequestRules.MAX_REQUEST_ID_BYTES + 1), "hi", null), 0));
        assertTrue(id.getMessage().contains("request_id is 257 bytes"), id.getMessage());
        InvalidRequestException ids = assertThrows(InvalidRequestException.class,
                () -> rules.validate(spec(null, null, new int[300]), 0));
        assertTrue(ids.getMessage().contains("prompt of 300 tokens does not fit the context of 256"), ids.getMessage());
    }
}
