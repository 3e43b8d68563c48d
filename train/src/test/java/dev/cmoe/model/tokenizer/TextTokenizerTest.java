package dev.cmoe.model.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Our trained tokenizer loaded through DJL's Rust tokenizers (native library from the jar, offline). */
class TextTokenizerTest {
    @TempDir
    static Path dir;

    @BeforeAll
    static void train() throws IOException {
        BpeTrainer.train(TrainingText.paragraphs(), 300, dir);
    }

    @Test
    void roundTripsTextExactly() throws IOException {
        String[] samples = {
            "The quick brown fox jumps over the lazy dog.",
            "naïve café — 東京",
            "  leading, trailing and   internal   runs of spaces  ",
            "line one\nline two\n\n\nafter blank lines\r\n\ttabbed",
            "emoji 🙂 and ünïcödé, numbers 3.14159 and 1,000,000",
            "",
            "x",
        };
        try (TextTokenizer tok = TextTokenizer.load(dir)) {
            for (String s : samples) {
                long[] ids = tok.encode(s);
                assertEquals(s, tok.decode(ids), "round trip of [" + s + "]");
                for (long id : ids) {
                    assertTrue(id >= 2 && id < tok.vocabSize(), "no special or out-of-range ids: " + id);
                }
            }
        }
    }

    @Test
    void mergesCompressAndLongTextIsNotTruncated() throws IOException {
        String text = String.join("\n", TrainingText.paragraphs());
        try (TextTokenizer tok = TextTokenizer.load(dir)) {
            long[] ids = tok.encode(text);
            int bytes = text.getBytes(StandardCharsets.UTF_8).length;
            assertTrue(ids.length > 512, "DJL's default 512-token truncation must be off: " + ids.length);
            assertTrue(ids.length < bytes * 0.75, ids.length + " tokens for " + bytes + " bytes");
            assertEquals(text, tok.decode(ids));
        }
    }

    @Test
    void specialIdsAndVocabSize() throws IOException {
        try (TextTokenizer tok = TextTokenizer.load(dir)) {
            assertEquals(SpecialTokens.BOS_ID, tok.bosId());
            assertEquals(SpecialTokens.EOS_ID, tok.eosId());
            assertEquals(300, tok.vocabSize());
            assertEquals("hi", tok.decode(new long[] {tok.bosId(), 2 + 'h', 2 + 'i', tok.eosId()}), "specials are not text");
        }
    }

    @Test
    void configJsonIdsTakePrecedence(@TempDir Path other) throws IOException {
        Files.copy(dir.resolve("tokenizer.json"), other.resolve("tokenizer.json"));
        Files.writeString(other.resolve("config.json"), "{\"bos_token_id\": 1, \"eos_token_id\": 0}");
        try (TextTokenizer tok = TextTokenizer.load(other)) {
            assertEquals(1, tok.bosId());
            assertEquals(0, tok.eosId());
        }
    }

    @Test
    void clearErrorsNameThePath(@TempDir Path bad) throws IOException {
        IOException missing = assertThrows(IOException.class, () -> TextTokenizer.load(bad));
        assertTrue(missing.getMessage().contains(bad.resolve("tokenizer.json").toString()), missing.getMessage());

        Files.writeString(bad.resolve("tokenizer.json"), "{ not json");
        IOException invalid = assertThrows(IOException.class, () -> TextTokenizer.load(bad));
        assertTrue(invalid.getMessage().contains(bad.resolve("tokenizer.json").toString()), invalid.getMessage());

        Files.writeString(bad.resolve("tokenizer.json"), "{\"model\": {\"type\": \"BPE\"}}");
        IOException noVocab = assertThrows(IOException.class, () -> TextTokenizer.load(bad));
        assertTrue(noVocab.getMessage().contains("model.vocab"), noVocab.getMessage());

        String json = Files.readString(dir.resolve("tokenizer.json")).replace("\"ByteLevel\"", "\"NoSuchPreTokenizer\"");
        Files.writeString(bad.resolve("tokenizer.json"), json);
        Files.copy(dir.resolve("tokenizer_config.json"), bad.resolve("tokenizer_config.json"));
        IOException rejected = assertThrows(IOException.class, () -> TextTokenizer.load(bad));
        assertTrue(rejected.getMessage().contains(bad.resolve("tokenizer.json").toString()), rejected.getMessage());
    }
}
