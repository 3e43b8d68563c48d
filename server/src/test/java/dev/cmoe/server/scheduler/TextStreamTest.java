package dev.cmoe.server.scheduler;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.tokenizer.StreamDecoder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Streaming text with stop strings: nothing of a stop string is ever sent, nothing else is held forever. */
class TextStreamTest {
    /** Token i is the i-th string here. */
    private static final String[] PIECES = {"Hel", "lo", " wor", "ld", "!", "\uD83D\uDE00", "END", "E", "ND"};

    private static TextStream stream(List<String> stops) {
        return new TextStream(StreamDecoder.ofBytes(id -> PIECES[id].getBytes(StandardCharsets.UTF_8)), stops);
    }

    @Test
    void withoutStopsTextFlowsAtOnce() {
        TextStream s = stream(List.of());
        assertEquals("Hel", s.push(0).text());
        assertEquals("lo", s.push(1).text());
        assertEquals("", s.finish().text());
    }

    @Test
    void aStopStringSplitAcrossTokensIsNeverSent() {
        TextStream s = stream(List.of("END"));
        StringBuilder sent = new StringBuilder();
        for (int id : new int[] {0, 1, 7}) {
            TextStream.Update u = s.push(id);
            assertFalse(u.stopped());
            sent.append(u.text());
        }
        TextStream.Update u = s.push(8);
        assertTrue(u.stopped());
        sent.append(u.text());
        assertEquals("Hello", sent.toString());
    }

    @Test
    void heldBackTextIsReleasedAtTheEnd() {
        TextStream s = stream(List.of("ENDX"));
        String sent = s.push(0).text() + s.push(6).text();
        assertEquals("HelEND", sent + s.finish().text());
    }

    @Test
    void surrogatePairsAreNotSplit() {
        TextStream s = stream(List.of("xy"));
        String first = s.push(5).text();
        assertEquals("", first, "the emoji's second half would be held back, so the whole pair waits");
        assertEquals("\uD83D\uDE00", s.finish().text());
    }
}
