package dev.cmoe.model.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BpeTrainerTest {
    @TempDir
    Path tmp;

    @Test
    void vocabularyLayoutIsSpecialsThenBytesThenMerges() {
        BpeTrainer.Result r = BpeTrainer.train(TrainingText.paragraphs(), 300);
        assertEquals(300, r.vocabSize());
        assertEquals(SpecialTokens.BOS, r.vocab().get(SpecialTokens.BOS_ID));
        assertEquals(SpecialTokens.EOS, r.vocab().get(SpecialTokens.EOS_ID));
        assertEquals("Ġ", r.vocab().get(2 + ' '));
        assertEquals("Ċ", r.vocab().get(2 + '\n'));
        assertEquals("a", r.vocab().get(2 + 'a'));
        assertEquals(300 - 258, r.merges().size());
        for (int i = 0; i < r.merges().size(); i++) {
            String[] m = r.merges().get(i);
            assertEquals(m[0] + m[1], r.vocab().get(258 + i), "merge " + i + " produces the next id");
        }
    }

    @Test
    void trainingIsDeterministic() throws IOException {
        BpeTrainer.train(TrainingText.paragraphs(), 300, tmp.resolve("a"));
        BpeTrainer.train(TrainingText.paragraphs(), 300, tmp.resolve("b"));
        assertArrayEquals(Files.readAllBytes(tmp.resolve("a/tokenizer.json")), Files.readAllBytes(tmp.resolve("b/tokenizer.json")));
        assertArrayEquals(Files.readAllBytes(tmp.resolve("a/tokenizer_config.json")),
                Files.readAllBytes(tmp.resolve("b/tokenizer_config.json")));
    }

    @Test
    void writesHuggingFaceByteLevelBpe() throws IOException {
        BpeTrainer.train(TrainingText.paragraphs(), 300, tmp);
        JsonObject root = JsonParser.parseString(Files.readString(tmp.resolve("tokenizer.json"))).getAsJsonObject();
        JsonObject model = root.getAsJsonObject("model");
        assertEquals("BPE", model.get("type").getAsString());
        assertEquals(300, model.getAsJsonObject("vocab").size());
        assertEquals(42, model.getAsJsonArray("merges").size());
        assertEquals("ByteLevel", root.getAsJsonObject("pre_tokenizer").get("type").getAsString());
        assertEquals(false, root.getAsJsonObject("pre_tokenizer").get("add_prefix_space").getAsBoolean());
        assertEquals("ByteLevel", root.getAsJsonObject("decoder").get("type").getAsString());
        assertTrue(root.get("post_processor").isJsonNull());
        assertEquals(2, root.getAsJsonArray("added_tokens").size());
        JsonObject config = JsonParser.parseString(Files.readString(tmp.resolve("tokenizer_config.json"))).getAsJsonObject();
        assertEquals("<s>", config.get("bos_token").getAsString());
        assertEquals("</s>", config.get("eos_token").getAsString());
        try (var files = Files.list(tmp)) {
            assertEquals(2, files.count(), "temp files left behind");
        }
    }

    @Test
    void stopsEarlyWhenNothingRepeatsAndRejectsTinyVocab() {
        BpeTrainer.Result r = BpeTrainer.train(List.of("ab cd"), 1000);
        assertEquals(258, r.vocabSize(), "no pair occurs twice, so nothing is merged");
        assertThrows(IllegalArgumentException.class, () -> BpeTrainer.train(List.of("x"), 257));
    }

    @Test
    void mostFrequentPairWinsAndTiesBreakBySmallerIds() {
        // Separate texts keep the pre-tokens space-free: pairs (a,a) x3, (b,b) x3, (a,b) x1.
        assertEquals(List.of("a a", "b b"), merges(BpeTrainer.train(List.of("aa", "aa", "aa", "bb", "bb", "bb", "ab"), 260)));
        assertEquals(List.of("b b", "a a"), merges(BpeTrainer.train(List.of("aa", "aa", "aa", "bb", "bb", "bb", "bb"), 260)));
    }

    private static List<String> merges(BpeTrainer.Result r) {
        return r.merges().stream().map(m -> m[0] + " " + m[1]).toList();
    }
}
