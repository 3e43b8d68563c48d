package dev.cmoe.deploy.bench;

import dev.cmoe.model.tokenizer.TextTokenizer;
import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.TokenIds;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.random.RandomGenerator;

/**
 * Prompts of a requested length cut from a text (the corpus test split), so a benchmark's input
 * looks like the model's real input. With the server's tokenizer the prompt is exactly N tokens
 * (BOS + N − 1 tokens of text, sent as token ids); without one it is N words of text and the
 * server's usage report says how many tokens that made.
 */
public final class PromptSource {
    private final int[] tokens;   // the whole text, tokenised; null without a tokenizer
    private final String[] words; // the whole text split on white space; null with a tokenizer
    private final int bos;        // BOS id, or -1
    private int skewToken = -1;   // the most frequent token, found on first use

    private PromptSource(int[] tokens, String[] words, int bos) {
        this.tokens = tokens;
        this.words = words;
        this.bos = bos;
    }

    /** Prompts of exact token counts, from {@code text} encoded by {@code tokenizer}. */
    public static PromptSource tokens(String text, TextTokenizer tokenizer) {
        int[] ids = tokenizer.encodeIds(text, false);
        if (ids.length < 2) {
            throw new IllegalArgumentException("the prompt text has " + ids.length + " tokens; need at least 2");
        }
        return new PromptSource(ids, null, tokenizer.bosId());
    }

    /** Prompts of N words of {@code text}, for servers whose tokenizer is not at hand. */
    public static PromptSource words(String text) {
        String[] w = text.strip().split("\\s+");
        if (w.length < 2 || w[0].isEmpty()) {
            throw new IllegalArgumentException("the prompt text has fewer than 2 words");
        }
        return new PromptSource(null, w, -1);
    }

    /** Whether prompts are exact token counts. */
    public boolean exact() {
        return tokens != null;
    }

    /** Sets the prompt of {@code request}: {@code length} tokens (or words) from a random place in the text. */
    public GenerateRequest.Builder prompt(GenerateRequest.Builder request, int length, RandomGenerator random) {
        if (tokens != null) {
            int body = bos >= 0 ? length - 1 : length;
            int[] ids = new int[length];
            int at = 0;
            if (bos >= 0) {
                ids[at++] = bos;
            }
            int start = random.nextInt(Math.max(1, tokens.length - body));
            for (int i = 0; i < body; i++) {
                ids[at++] = tokens[(start + i) % tokens.length];
            }
            return request.setTokenIds(ids(ids));
        }
        int start = random.nextInt(Math.max(1, words.length - length));
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < length; i++) {
            if (i > 0) {
                text.append(' ');
            }
            text.append(words[(start + i) % words.length]);
        }
        return request.setText(text.toString());
    }

    /**
     * Sets a prompt that drives routing onto few experts: the text's most frequent token repeated
     * (BOS first). A carved model's router sees nearly the same hidden state at every position, so
     * most of the step's rows go to the same few experts.
     */
    public synchronized GenerateRequest.Builder skewedPrompt(GenerateRequest.Builder request, int length) {
        if (tokens != null) {
            int[] ids = new int[length];
            if (skewToken < 0) {
                skewToken = mostFrequentToken();
            }
            Arrays.fill(ids, skewToken);
            if (bos >= 0) {
                ids[0] = bos;
            }
            return request.setTokenIds(ids(ids));
        }
        return request.setText((mostFrequentWord() + " ").repeat(length).strip());
    }

    private int mostFrequentToken() {
        Map<Integer, Integer> counts = new HashMap<>();
        for (int t : tokens) {
            if (t != bos) {
                counts.merge(t, 1, Integer::sum);
            }
        }
        // the most frequent; among equals, the lowest id, so the choice does not depend on hash order
        int best = -1;
        int bestCount = -1;
        for (Map.Entry<Integer, Integer> e : counts.entrySet()) {
            if (e.getValue() > bestCount || (e.getValue() == bestCount && e.getKey() < best)) {
                best = e.getKey();
                bestCount = e.getValue();
            }
        }
        return best;
    }

    private String mostFrequentWord() {
        Map<String, Integer> counts = new HashMap<>();
        for (String w : words) {
            counts.merge(w, 1, Integer::sum);
        }
        String best = null;
        int bestCount = -1;
        for (Map.Entry<String, Integer> e : counts.entrySet()) {
            if (e.getValue() > bestCount || (e.getValue() == bestCount && e.getKey().compareTo(best) < 0)) {
                best = e.getKey();
                bestCount = e.getValue();
            }
        }
        return best;
    }

    private static TokenIds ids(int[] ids) {
        TokenIds.Builder b = TokenIds.newBuilder();
        for (int id : ids) {
            b.addIds(id);
        }
        return b.build();
    }
}
