package dev.cmoe.server.scheduler;

import dev.cmoe.model.tokenizer.StreamDecoder;
import java.util.List;

/**
 * One sequence's generated text as it streams: decodes token by token and watches for stop
 * strings. The last (longest stop string − 1) characters are held back, because they may be the
 * start of a stop string that the next token completes, and text once sent cannot be recalled.
 */
final class TextStream {
    /** Text that may now be sent, and whether a stop string ended the sequence. */
    record Update(String text, boolean stopped) {
    }

    private final StreamDecoder decoder;
    private final List<String> stops;
    private final int holdBack;
    private final StringBuilder pending = new StringBuilder();

    TextStream(StreamDecoder decoder, List<String> stops) {
        this.decoder = decoder;
        this.stops = stops;
        this.holdBack = stops.stream().mapToInt(String::length).max().orElse(1) - 1;
    }

    /** Adds a generated token's text. */
    Update push(int token) {
        pending.append(decoder.push(token));
        return release(false);
    }

    /** Releases everything held back, at the end of the sequence. */
    Update finish() {
        pending.append(decoder.flush());
        return release(true);
    }

    private Update release(boolean all) {
        int stopAt = -1;
        for (String s : stops) {
            int i = pending.indexOf(s);
            if (i >= 0 && (stopAt < 0 || i < stopAt)) {
                stopAt = i;
            }
        }
        if (stopAt >= 0) {
            String out = pending.substring(0, stopAt);
            pending.setLength(0);
            return new Update(out, true);
        }
        int cut = all ? pending.length() : Math.max(0, pending.length() - holdBack);
        if (cut > 0 && cut < pending.length() && Character.isHighSurrogate(pending.charAt(cut - 1))) {
            cut--; // never split a surrogate pair across two chunks
        }
        String out = pending.substring(0, cut);
        pending.delete(0, cut);
        return new Update(out, false);
    }
}
