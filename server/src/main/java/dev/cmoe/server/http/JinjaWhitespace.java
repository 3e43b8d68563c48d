package dev.cmoe.server.http;

/**
 * Applies Jinja's whitespace rules to a template's text before jinjava sees it: the {@code -}
 * markers of {@code {{- -}} {%- -%} {#- -#}} (jinjava ignores them on expressions), trim_blocks
 * and lstrip_blocks as Hugging Face renders chat templates, and comments removed. What comes out
 * has the same output under jinjava with its own whitespace options off as the input has under
 * Python Jinja with {@code trim_blocks=True, lstrip_blocks=True}. Two spellings jinjava parses
 * differently are rewritten too: keyword arguments ({@link #keywordArguments}) and the reversing
 * slice {@code [::-1]} (as {@code |reverse}).
 */
final class JinjaWhitespace {
    private JinjaWhitespace() {
    }

    static String normalise(String source) {
        StringBuilder out = new StringBuilder(source.length());
        int i = 0;
        boolean stripNext = false;   // a "-" closed the last tag: strip leading whitespace of the data
        boolean trimNewline = false; // a block or comment closed the last tag: drop one newline (trim_blocks)
        while (i < source.length()) {
            int open = nextOpen(source, i);
            String data = source.substring(i, open < 0 ? source.length() : open);
            if (stripNext) {
                data = data.stripLeading();
            } else if (trimNewline && data.startsWith("\n")) {
                data = data.substring(1);
            } else if (trimNewline && data.startsWith("\r\n")) {
                data = data.substring(2);
            }
            if (open < 0) {
                out.append(data);
                break;
            }
            char kind = source.charAt(open + 1); // '{', '%' or '#'
            boolean minusOpen = open + 2 < source.length() && source.charAt(open + 2) == '-';
            boolean plusOpen = open + 2 < source.length() && source.charAt(open + 2) == '+';
            if (minusOpen) {
                data = data.stripTrailing();
            } else if (kind != '{' && !plusOpen) {
                data = lstripLine(source, i, open, data);
            }
            out.append(data);
            int close = closeOf(source, open + 2, kind);
            int bodyStart = open + 2 + (minusOpen || plusOpen ? 1 : 0);
            boolean minusClose = source.charAt(close - 1) == '-' && close - 1 >= bodyStart;
            String body = source.substring(bodyStart, minusClose ? close - 1 : close);
            if (kind != '#') {
                out.append('{').append(kind).append(keywordArguments(body).replace("[::-1]", "|reverse")).append(kind == '{' ? '}' : '%').append('}');
            }
            stripNext = minusClose;
            trimNewline = kind != '{';
            i = close + 2;
        }
        return out.toString();
    }

    /**
     * lstrip_blocks: the spaces and tabs between a line's start and a block tag at {@code open}
     * go, when nothing else (no other tag either) stands before the tag on its line.
     */
    private static String lstripLine(String source, int dataStart, int open, String data) {
        int j = open - 1;
        while (j >= dataStart && (source.charAt(j) == ' ' || source.charAt(j) == '\t')) {
            j--;
        }
        // the line starts in this data (after a newline), or the template starts here
        boolean lineStart = j >= dataStart ? source.charAt(j) == '\n' : dataStart == 0;
        if (!lineStart) {
            return data;
        }
        int cut = open - (j + 1); // characters of indentation, all at the end of data
        return data.length() >= cut ? data.substring(0, data.length() - cut) : data;
    }

    /**
     * Puts each keyword argument's value in parentheses ({@code f(a=x - 1)} becomes
     * {@code f(a=(x - 1))}): jinjava binds {@code =} tighter than arithmetic there, Jinja does not.
     */
    static String keywordArguments(String body) {
        StringBuilder out = new StringBuilder(body.length() + 8);
        java.util.ArrayDeque<int[]> depth = new java.util.ArrayDeque<>(); // {bracket char, keyword value open}
        char quote = 0;
        for (int i = 0; i < body.length(); i++) {
            char c = body.charAt(i);
            if (quote != 0) {
                out.append(c);
                if (c == '\\' && i + 1 < body.length()) {
                    out.append(body.charAt(++i));
                } else if (c == quote) {
                    quote = 0;
                }
                continue;
            }
            switch (c) {
                case '\'', '"' -> quote = c;
                case '(', '[', '{' -> depth.push(new int[] {c, 0});
                case ')', ']', '}', ',' -> {
                    int[] top = depth.peek();
                    if (top != null && top[1] == 1) {
                        out.append(')');
                        top[1] = 0;
                    }
                    if (c != ',' && top != null) {
                        depth.pop();
                    }
                }
                case '=' -> {
                    int[] top = depth.peek();
                    boolean single = (i + 1 >= body.length() || body.charAt(i + 1) != '=')
                            && (i == 0 || "=!<>".indexOf(body.charAt(i - 1)) < 0);
                    if (single && top != null && top[0] == '(' && top[1] == 0 && keywordBefore(body, i)) {
                        out.append("=(");
                        top[1] = 1;
                        continue;
                    }
                }
                default -> {
                }
            }
            out.append(c);
        }
        return out.toString();
    }

    /** Whether an identifier directly after "(" or "," stands before position {@code eq}. */
    private static boolean keywordBefore(String body, int eq) {
        int j = eq - 1;
        while (j >= 0 && body.charAt(j) == ' ') {
            j--;
        }
        int end = j;
        while (j >= 0 && (Character.isLetterOrDigit(body.charAt(j)) || body.charAt(j) == '_')) {
            j--;
        }
        if (j == end) {
            return false;
        }
        while (j >= 0 && body.charAt(j) == ' ') {
            j--;
        }
        return j >= 0 && (body.charAt(j) == '(' || body.charAt(j) == ',');
    }

    private static int nextOpen(String s, int from) {
        for (int i = from; i + 1 < s.length(); i++) {
            if (s.charAt(i) == '{') {
                char c = s.charAt(i + 1);
                if (c == '{' || c == '%' || c == '#') {
                    return i;
                }
            }
        }
        return -1;
    }

    /** Index of the closing "}}", "%}" or "#}", skipping string literals inside expressions and tags. */
    private static int closeOf(String s, int from, char kind) {
        char end = kind == '{' ? '}' : kind;
        char quote = 0;
        for (int i = from; i + 1 < s.length(); i++) {
            char c = s.charAt(i);
            if (kind != '#') {
                if (quote != 0) {
                    if (c == '\\') {
                        i++;
                    } else if (c == quote) {
                        quote = 0;
                    }
                    continue;
                }
                if (c == '\'' || c == '"') {
                    quote = c;
                    continue;
                }
            }
            if (c == end && s.charAt(i + 1) == '}') {
                return i;
            }
        }
        throw new IllegalArgumentException("the chat template has an unclosed tag at offset " + (from - 2));
    }
}
