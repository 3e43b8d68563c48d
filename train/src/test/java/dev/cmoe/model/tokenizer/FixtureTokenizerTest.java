package dev.cmoe.model.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.cmoe.model.testing.TinyCheckpoint;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The model module's committed fixture tokenizer is exactly what BpeTrainer learns from its text. */
class FixtureTokenizerTest {
    @TempDir
    Path tmp;

    @Test
    void committedTokenizerEqualsAFreshTraining() throws Exception {
        BpeTrainer.train(List.of(TinyCheckpoint.TEXT), TinyCheckpoint.TOKENIZER_IDS, tmp);
        for (String name : List.of("tokenizer.json", "tokenizer_config.json")) {
            try (InputStream in = TinyCheckpoint.class.getResourceAsStream("/tiny-tokenizer/" + name)) {
                assertEquals(new String(in.readAllBytes(), StandardCharsets.UTF_8),
                        Files.readString(tmp.resolve(name), StandardCharsets.UTF_8), name);
            }
        }
    }
}
