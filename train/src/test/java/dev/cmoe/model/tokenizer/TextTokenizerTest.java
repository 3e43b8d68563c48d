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

    /** Loads {@code tokenizerJson} (and optionally the other two files) and returns the refusal's message. */
    private static String refusal(Path bad, String tokenizerJson, String tokenizerConfig, String config)
            throws IOException {
        Files.writeString(bad.resolve("tokenizer.json"), tokenizerJson);
        for (String[] f : new String[][] {{"tokenizer_config.json", tokenizerConfig}, {"config.json", config}}) {
            if (f[1] == null) {
                Files.deleteIfExists(bad.resolve(f[0]));
            } else {
                Files.writeString(bad.resolve(f[0]), f[1]);
            }
        }
        return assertThrows(IOException.class, () -> TextTokenizer.load(bad)).getMessage();
    }

    @Test
    void malformedFilesGiveClearErrorsNotRuntimeExceptions(@TempDir Path bad) throws IOException {
        String good = Files.readString(dir.resolve("tokenizer.json"));
        String goodConfig = Files.readString(dir.resolve("tokenizer_config.json"));
        String m = refusal(bad, good.replaceFirst("\"<s>\": 0", "\"<s>\": -5"), goodConfig, null);
        assertTrue(m.contains("model.vocab entry \"<s>\"") && m.contains("-5") && m.contains("token id"), m);
        m = refusal(bad, good.replaceFirst("\"<s>\": 0", "\"<s>\": 2147483647"), goodConfig, null);
        assertTrue(m.contains("2147483647") && m.contains("[0, 4194303]"), m);
        m = refusal(bad, good.replaceFirst("\"<s>\": 0", "\"<s>\": \"zero\""), goodConfig, null);
        assertTrue(m.contains("a string (\"zero\")"), m);
        m = refusal(bad, good.replaceFirst("\"added_tokens\": \\[", "\"added_tokens\": [ 7,"), goodConfig, null);
        assertTrue(m.contains("added_tokens[0] is a number (7)"), m);
        m = refusal(bad, good.replaceFirst("\"content\": \"<s>\"", "\"content\": {}"), goodConfig, null);
        assertTrue(m.contains("added_tokens[0].content is an object"), m);
        m = refusal(bad, good.replaceFirst("\"added_tokens\": \\[", "\"added_tokens\": {\"x\": ["), goodConfig, null);
        assertTrue(m.contains("invalid JSON"), m);
        m = refusal(bad, good.replace("\"decoder\": {\n    \"type\": \"ByteLevel\"", "\"decoder\": {\n    \"type\": 3"),
                goodConfig, null);
        assertTrue(m.contains("decoder.type is a number (3)"), m);
        m = refusal(bad, good, goodConfig.replace("\"bos_token\": \"<s>\"", "\"bos_token\": {\"id\": 0}"), null);
        assertTrue(m.contains("bos_token.content is missing"), m);
        m = refusal(bad, good, goodConfig, "{\"bos_token_id\": \"zero\"}");
        assertTrue(m.contains("bos_token_id is a string") && m.contains("[0, 300)"), m);
        m = refusal(bad, good, goodConfig, "{\"eos_token_id\": 300}");
        assertTrue(m.contains("eos_token_id is a number (300)"), m);
        m = refusal(bad, good + " trailing", goodConfig, null);
        assertTrue(m.contains("invalid JSON") && m.contains("tokenizer.json"), m);
        m = refusal(bad, "{'model': {'vocab': {}}}", goodConfig, null);
        assertTrue(m.contains("invalid JSON"), "lenient JSON is refused: " + m);
        Files.write(bad.resolve("tokenizer.json"), new byte[] {'{', '"', (byte) 0xC3, '"', ':', '1', '}'});
        m = assertThrows(IOException.class, () -> TextTokenizer.load(bad)).getMessage();
        assertTrue(m.contains("not valid UTF-8"), m);
    }

    @Test
    void maxTokenBytesBoundsTheTextOfEveryToken() throws IOException {
        try (TextTokenizer tok = TextTokenizer.load(dir)) {
            int max = tok.maxTokenBytes();
            assertTrue(max >= 2 && max < 64, "max token bytes " + max);
            String text = String.join("\n", TrainingText.paragraphs());
            for (long id : tok.encode(text)) {
                int bytes = tok.decode(new long[] {id}).getBytes(StandardCharsets.UTF_8).length;
                assertTrue(bytes <= max, "token " + id + " decodes to " + bytes + " bytes > " + max);
            }
        }
    }
}
