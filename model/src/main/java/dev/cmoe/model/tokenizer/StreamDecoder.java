package dev.cmoe.model.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.function.Function;
import java.util.function.IntFunction;

/**
 * Turns generated token ids into text one token at a time for streaming output. A token can end in
 * the middle of a multi-byte UTF-8 character (byte-level BPE splits "東" into up to three tokens),
 * so text is released only once the bytes received so far form complete characters.
 *
 * <p>Not thread-safe: use one instance per generated sequence. Special tokens produce no text.
 */
public final class StreamDecoder {
    private final IntFunction<byte[]> tokenBytes;
    private final Function<long[], String> decoder;
    private byte[] pending = new byte[16];
    private int pendingLength;
    private long[] ids = new long[16];
    private int idCount;
    private int prefixOffset;
    private int readOffset;

    private StreamDecoder(IntFunction<byte[]> tokenBytes, Function<long[], String> decoder) {
        this.tokenBytes = tokenBytes;
        this.decoder = decoder;
    }

    /**
     * A decoder that knows each token's bytes (byte-level vocabularies): exact, and no native call
     * per token. {@code tokenBytes} returns null for tokens that carry no text.
     */
    public static StreamDecoder ofBytes(IntFunction<byte[]> tokenBytes) {
        return new StreamDecoder(tokenBytes, null);
    }

    /**
     * A decoder for any tokenizer, given its full-sequence decode function: it decodes a short
     * window with and without the new token and releases the difference once it no longer ends in
     * U+FFFD (an incomplete character), the scheme of Hugging Face's {@code DecodeStream}. The
     * window keeps one earlier token so decoders that strip a leading space see the context.
     */
    public static StreamDecoder ofDecodeFunction(Function<long[], String> decode) {
        return new StreamDecoder(null, decode);
    }

    /** Adds one token and returns the text it completes, possibly empty. */
    public String push(long id) {
        return tokenBytes != null ? pushBytes(id) : pushDecoded(id);
    }

    /** Returns whatever is still held back (incomplete characters become U+FFFD) and resets. */
    public String flush() {
        String out;
        if (tokenBytes != null) {
            out = new String(pending, 0, pendingLength, StandardCharsets.UTF_8);
        } else {
            String prefix = decoder.apply(Arrays.copyOfRange(ids, prefixOffset, readOffset));
            String full = decoder.apply(Arrays.copyOfRange(ids, prefixOffset, idCount));
            out = full.length() > prefix.length() ? full.substring(prefix.length()) : "";
        }
        pendingLength = 0;
        idCount = prefixOffset = readOffset = 0;
        return out;
    }

    private String pushBytes(long id) {
        byte[] b = id < 0 || id > Integer.MAX_VALUE ? null : tokenBytes.apply((int) id);
        if (b == null || b.length == 0) {
            return "";
        }
        if (pendingLength + b.length > pending.length) {
            pending = Arrays.copyOf(pending, Math.max(pending.length * 2, pendingLength + b.length));
        }
        System.arraycopy(b, 0, pending, pendingLength, b.length);
        pendingLength += b.length;
        int complete = completePrefix(pending, pendingLength);
        if (complete == 0) {
            return "";
        }
        String out = new String(pending, 0, complete, StandardCharsets.UTF_8);
        System.arraycopy(pending, complete, pending, 0, pendingLength - complete);
        pendingLength -= complete;
        return out;
    }

    /** The length of the longest prefix that does not end inside a multi-byte character. */
    static int completePrefix(byte[] buf, int len) {
        for (int back = 1; back <= Math.min(3, len); back++) {
            int b = buf[len - back] & 0xff;
            if ((b & 0xC0) == 0x80) {
                continue; // continuation byte: keep looking for the lead byte
            }
            int need = b >= 0xF8 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
            return need > back ? len - back : len;
        }
        // No lead byte within 3 bytes: these continuation bytes can never complete, release them.
        return len;
    }

    private String pushDecoded(long id) {
        if (idCount == ids.length) {
            // Forget ids before the window; they have been emitted and are no longer context.
            int keep = idCount - prefixOffset;
            long[] next = new long[Math.max(16, keep * 2)];
            System.arraycopy(ids, prefixOffset, next, 0, keep);
            ids = next;
            readOffset -= prefixOffset;
            idCount = keep;
            prefixOffset = 0;
        }
        ids[idCount++] = id;
        String prefix = decoder.apply(Arrays.copyOfRange(ids, prefixOffset, readOffset));
        String full = decoder.apply(Arrays.copyOfRange(ids, prefixOffset, idCount));
        if (full.length() > prefix.length() && !full.endsWith("\uFFFD") && full.startsWith(prefix)) {
            String out = full.substring(prefix.length());
            prefixOffset = readOffset;
            readOffset = idCount;
            return out;
        }
        return "";
    }
}
