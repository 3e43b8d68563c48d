package dev.cmoe.model.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StreamDecoderTest {

    @Test
    void holdsBackASplitMultiByteCharacter() {
        byte[] tokyo = "東".getBytes(StandardCharsets.UTF_8); // E6 9D B1
        byte[][] table = {
            null, // a special token: no text
            "a".getBytes(StandardCharsets.UTF_8),
            {tokyo[0]},
            {tokyo[1], tokyo[2], 'b'},
        };
        StreamDecoder d = StreamDecoder.ofBytes(id -> table[id]);
        assertEquals("a", d.push(1));
        assertEquals("", d.push(2), "a lone lead byte is not text yet");
        assertEquals("", d.push(0));
        assertEquals("東b", d.push(3));
        assertEquals("", d.flush());
        assertEquals("", d.push(2));
        assertEquals("\uFFFD", d.flush(), "an unfinished character is replaced at the end");
    }

    @Test
    void completePrefixFindsTheLastCharacterBoundary() {
        byte[] four = "🙂".getBytes(StandardCharsets.UTF_8);
        for (int n = 1; n < 4; n++) {
            assertEquals(0, StreamDecoder.completePrefix(four, n), "first " + n + " bytes of a 4-byte character");
        }
        assertEquals(4, StreamDecoder.completePrefix(four, 4));
        byte[] mixed = "x€".getBytes(StandardCharsets.UTF_8);
        assertEquals(1, StreamDecoder.completePrefix(mixed, 3));
        assertEquals(2, StreamDecoder.completePrefix(new byte[] {(byte) 0x80, (byte) 0x80}, 2), "stray continuation bytes go out");
    }

    @Test
    void streamsTrainedTokenizerOutputTokenByToken(@TempDir Path dir) throws IOException {
        BpeTrainer.train(TrainingText.paragraphs(), 300, dir);
        String text = "A naïve café in 東京 🙂 — done.\nNext line";
        try (TextTokenizer tok = TextTokenizer.load(dir)) {
            long[] ids = tok.encode(text);
            StreamDecoder d = tok.streamDecoder();
            List<String> pieces = new ArrayList<>();
            StringBuilder all = new StringBuilder();
            for (long id : ids) {
                String piece = d.push(id);
                pieces.add(piece);
                all.append(piece);
            }
            all.append(d.flush());
            assertEquals(text, all.toString());
            assertTrue(pieces.stream().noneMatch(p -> p.contains("\uFFFD")), "no broken characters: " + pieces);
            assertTrue(pieces.contains(""), "some token ended inside a character: " + pieces);
        }
    }

    @Test
    void decodeFunctionModeWaitsForCompleteCharacters() {
        // Fake tokenizer: token i is byte i; decoding is lossy UTF-8 like Hugging Face's.
        StreamDecoder d = StreamDecoder.ofDecodeFunction(ids -> {
            byte[] b = new byte[ids.length];
            for (int i = 0; i < ids.length; i++) {
                b[i] = (byte) ids[i];
            }
            return new String(b, StandardCharsets.UTF_8);
        });
        byte[] text = "hé東".getBytes(StandardCharsets.UTF_8);
        StringBuilder out = new StringBuilder();
        List<String> pieces = new ArrayList<>();
        for (byte b : text) {
            String p = d.push(b & 0xff);
            pieces.add(p);
            out.append(p);
        }
        out.append(d.flush());
        assertEquals("hé東", out.toString());
        assertEquals(Arrays.asList("h", "", "é", "", "", "東"), pieces);
    }
}
