package dev.cmoe.model.tokenizer;

import java.util.ArrayList;
import java.util.List;

/** A few KB of English with some non-ASCII text, small enough to train on in milliseconds. */
final class TrainingText {
    private TrainingText() {}

    static List<String> paragraphs() {
        String[] sentences = {
            "The quick brown fox jumps over the lazy dog.",
            "The jury said it did find that many of the election laws are outmoded or inadequate.",
            "She greeted her husband's colleagues with smiling politeness, offering nothing.",
            "In the end the protest did not go unheeded, and the city took steps to remedy this problem.",
            "A naïve café owner in 東京 sold 12 cups of coffee — and 3 more — before noon.",
            "Then they went home; it was late, and the streets of the town were quiet.",
            "\"I can fix him something later in the afternoon when we get home\", Rachel said.",
        };
        List<String> out = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            StringBuilder p = new StringBuilder();
            for (int j = 0; j < 4; j++) {
                p.append(j > 0 ? " " : "").append(sentences[(i * 3 + j) % sentences.length]);
            }
            out.add(p.toString());
        }
        return out;
    }
}
