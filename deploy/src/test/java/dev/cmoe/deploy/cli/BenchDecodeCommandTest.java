package dev.cmoe.deploy.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.deploy.Cli;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.testing.Environment;
import dev.cmoe.model.testing.HfFixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code cmoe bench-decode}: the record other engines are compared against holds the model's greedy ids. */
class BenchDecodeCommandTest {
    @TempDir
    Path tmp;

    @Test
    void recordHoldsThePromptItsGreedyContinuationAndTimings() throws Exception {
        Path model = Environment.repoRoot().resolve("models/brown-llama");
        Path json = tmp.resolve("ours.json");
        assertEquals(0, Cli.run("bench-decode", "--model", model.toString(), "--text", "The jury said", "--prompt",
                "10", "--tokens", "5", "--repeats", "1", "--json", json.toString()));
        JsonObject o = JsonParser.parseString(Files.readString(json)).getAsJsonObject();
        int[] prompt = ints(o.getAsJsonArray("prompt_ids"));
        assertEquals(10, prompt.length);
        try (ModelDir dir = ModelDir.open(model); NDManager m = NDManager.newBaseManager()) {
            int[] text = dir.tokenizer().encodeIds("The jury said", false);
            assertArrayEquals(text, ints(o.getAsJsonArray("text_ids")));
            int[] withBos = dir.tokenizer().encodeIds("The jury said", true);
            for (int i = 0; i < prompt.length; i++) {
                assertEquals(withBos[i % withBos.length], prompt[i], "BOS + text, repeated to the prompt length");
            }
            assertArrayEquals(HfFixtures.greedy(dir.model(), prompt, 5, m), ints(o.getAsJsonArray("greedy_ids")));
        }
        assertTrue(o.getAsJsonArray("decode_tokens_per_s").get(0).getAsDouble() > 0);
        assertTrue(o.getAsJsonArray("prefill_ms").get(0).getAsDouble() > 0);
    }

    private static int[] ints(JsonArray a) {
        return StreamSupport.stream(a.spliterator(), false).mapToInt(e -> e.getAsInt()).toArray();
    }
}
