package dev.cmoe.model.tokenizer;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Coverage-guided fuzzing of the tokenizer loader: whatever tokenizer.json holds, loading either
 * works or throws an {@link IOException} naming the problem; a tokenizer that loads encodes text
 * into ids inside its vocabulary. Regression inputs live in
 * {@code src/test/resources/dev/cmoe/model/tokenizer/TokenizerFuzzTestInputs/}.
 */
class TokenizerFuzzTest {
    private static final Path DIR;

    static {
        try {
            DIR = Files.createTempDirectory("cmoe-fuzz-tokenizer");
            DIR.toFile().deleteOnExit();
            Files.writeString(DIR.resolve(TextTokenizer.TOKENIZER_CONFIG_JSON),
                    "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}", StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @FuzzTest(maxDuration = "5s")
    void loadTokenizerJson(byte[] tokenizerJson) throws IOException {
        Path file = DIR.resolve(TextTokenizer.TOKENIZER_JSON);
        Files.write(file, tokenizerJson);
        TextTokenizer tok;
        try {
            tok = TextTokenizer.load(DIR);
        } catch (IOException expected) {
            return;
        }
        try (tok) {
            if (tok.bosId() < 0 || tok.bosId() >= tok.vocabSize() || tok.eosId() < 0 || tok.eosId() >= tok.vocabSize()) {
                throw new AssertionError("BOS " + tok.bosId() + " / EOS " + tok.eosId() + " outside a vocabulary of "
                        + tok.vocabSize());
            }
            for (long id : tok.encode("The jury said 3.14 naïve")) {
                if (id < 0 || id >= tok.vocabSize()) {
                    throw new AssertionError("id " + id + " outside a vocabulary of " + tok.vocabSize());
                }
            }
        }
    }
}
