package dev.cmoe.model.data;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Turns a Brown corpus document in its tagged form ({@code word/tag}) back into readable prose, so
 * language models train on text that looks like text rather than on tokenizer-hostile tag soup.
 *
 * <p>Layout of the tagged files: blocks separated by blank lines are paragraphs (a paragraph that
 * starts with a tab is an indented one; the others follow headlines or page breaks), and each line
 * inside a block is one sentence. A line whose every tag carries {@code -hl} is a headline and is
 * kept on its own output line.
 */
public final class BrownText {
    private static final Pattern BLOCK_SEPARATOR = Pattern.compile("\\n[ \\t]*(?:\\r?\\n[ \\t]*)+");
    private static final Pattern SPACES = Pattern.compile("[ \\t]+");

    /** Tokens written without a space before them. */
    private static final Set<String> ATTACH_LEFT = Set.of(",", ".", ";", ":", "?", "!", ")", "]", "}", "%");
    /** Tokens written without a space after them. */
    private static final Set<String> ATTACH_RIGHT = Set.of("(", "[", "{", "$");
    /** Clitics a tagger may split off; the Brown files mostly keep them attached, but be safe. */
    private static final Set<String> CLITICS = Set.of("'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "n't");
    /**
     * Sentence-final ; ? ! : appear twice in these files (the second copy is the sentence marker);
     * printing both would teach a model that "??" is normal English.
     */
    private static final Set<String> DOUBLED_TERMINATORS = Set.of(";", "?", "!", ":");

    private BrownText() {}

    /** Converts one tagged document to plain text: one paragraph (or headline) per line, no trailing newline. */
    public static String toPlain(String taggedDocument) {
        List<String> lines = new ArrayList<>();
        for (String block : BLOCK_SEPARATOR.split(taggedDocument.replace("\r\n", "\n"))) {
            List<String> paragraph = new ArrayList<>();
            for (String line : block.split("\n")) {
                List<String[]> tokens = tokens(line);
                if (tokens.isEmpty()) {
                    continue;
                }
                if (isHeadline(tokens)) {
                    addIfNotEmpty(lines, render(paragraph));
                    paragraph.clear();
                    addIfNotEmpty(lines, render(words(tokens)));
                } else {
                    paragraph.addAll(words(tokens));
                }
            }
            addIfNotEmpty(lines, render(paragraph));
        }
        return String.join("\n", lines);
    }

    /** Splits {@code word/tag} on the last slash, since words such as {@code 1/2} contain slashes. */
    static String[] splitTagged(String token) {
        int slash = token.lastIndexOf('/');
        if (slash <= 0) {
            return new String[] {token, ""};
        }
        return new String[] {token.substring(0, slash), token.substring(slash + 1)};
    }

    private static List<String[]> tokens(String line) {
        List<String[]> out = new ArrayList<>();
        for (String t : SPACES.split(line.strip())) {
            if (!t.isEmpty()) {
                out.add(splitTagged(t));
            }
        }
        return out;
    }

    private static boolean isHeadline(List<String[]> tokens) {
        for (String[] t : tokens) {
            if (!t[1].contains("-hl")) {
                return false;
            }
        }
        return true;
    }

    private static List<String> words(List<String[]> tokens) {
        List<String> out = new ArrayList<>(tokens.size());
        for (String[] t : tokens) {
            out.add(t[0]);
        }
        return out;
    }

    private static void addIfNotEmpty(List<String> lines, String s) {
        if (!s.isEmpty()) {
            lines.add(s);
        }
    }

    /** Joins words with natural spacing; quote state runs over the whole paragraph. */
    static String render(List<String> words) {
        List<String> kept = dropDuplicates(words);
        StringBuilder sb = new StringBuilder();
        boolean glueNext = true; // nothing goes before the first word
        boolean singleOpen = false;
        for (int i = 0; i < kept.size(); i++) {
            String w = kept.get(i);
            String text = w;
            boolean left;
            boolean right;
            switch (w) {
                case "``" -> {
                    text = "\"";
                    left = false;
                    right = true;
                }
                case "''" -> {
                    text = "\"";
                    left = true;
                    right = false;
                }
                case "'" -> {
                    boolean closing = closesSingleQuote(kept, i, glueNext, singleOpen);
                    singleOpen = !closing;
                    left = closing;
                    right = !closing;
                }
                default -> {
                    left = ATTACH_LEFT.contains(w) || CLITICS.contains(w.toLowerCase(java.util.Locale.ROOT));
                    right = ATTACH_RIGHT.contains(w);
                }
            }
            if (!glueNext && !left) {
                sb.append(' ');
            }
            sb.append(text);
            glueNext = right;
        }
        return sb.toString();
    }

    /**
     * Brown writes both single quotes as {@code '}; decide from context: before punctuation or at the
     * end it closes, after an opening mark it opens, otherwise it alternates.
     */
    private static boolean closesSingleQuote(List<String> words, int i, boolean afterOpener, boolean open) {
        if (i + 1 >= words.size()) {
            return true;
        }
        String next = words.get(i + 1);
        if (ATTACH_LEFT.contains(next) || next.equals("''") || next.equals("'")) {
            return true;
        }
        if (afterOpener) {
            return false;
        }
        return open;
    }

    private static List<String> dropDuplicates(List<String> words) {
        List<String> out = new ArrayList<>(words.size());
        for (String w : words) {
            String prev = out.isEmpty() ? null : out.get(out.size() - 1);
            if (prev != null && prev.equals(w) && DOUBLED_TERMINATORS.contains(w)) {
                continue;
            }
            // "Jr./np ./." : the abbreviation's own period also ends the sentence in real prose.
            if (prev != null && w.equals(".") && prev.length() > 1 && prev.endsWith(".")) {
                continue;
            }
            out.add(w);
        }
        return out;
    }
}
