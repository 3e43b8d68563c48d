package dev.cmoe.model.data;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A minimal reader for the regular files of a POSIX/ustar tar stream, so that unpacking an npm
 * tarball needs no archive library. Links, directories and devices are skipped; pax and GNU
 * long-name headers are honoured because npm and GNU tar emit them for long paths.
 */
final class TarReader {
    private static final int BLOCK = 512;

    private TarReader() {}

    /** Reads every regular file of an (already decompressed) tar stream: path to content, in archive order. */
    static Map<String, byte[]> readRegularFiles(InputStream in) throws IOException {
        Map<String, byte[]> files = new LinkedHashMap<>();
        byte[] header = new byte[BLOCK];
        String pendingName = null;
        while (true) {
            if (!readFully(in, header, true)) {
                return files; // a stream that ends without the two zero blocks is tolerated, as GNU tar does
            }
            if (isZero(header)) {
                return files;
            }
            verifyChecksum(header);
            long size = octal(header, 124, 12);
            char type = (char) header[156];
            byte[] data = readData(in, size);
            switch (type) {
                case 'L' -> pendingName = cString(data, 0, data.length);
                case 'x' -> pendingName = paxPath(data, pendingName);
                case '0', '\0', '7' -> {
                    files.put(pendingName != null ? pendingName : headerName(header), data);
                    pendingName = null;
                }
                default -> pendingName = null; // directories, links, global pax headers: nothing to extract
            }
        }
    }

    private static String headerName(byte[] h) {
        String name = cString(h, 0, 100);
        boolean ustar = cString(h, 257, 5).equals("ustar");
        String prefix = ustar ? cString(h, 345, 155) : "";
        return prefix.isEmpty() ? name : prefix + "/" + name;
    }

    private static String paxPath(byte[] data, String fallback) {
        // Records are "<len> key=value\n"; only the path matters for extraction.
        String text = new String(data, StandardCharsets.UTF_8);
        for (String record : text.split("\n")) {
            int space = record.indexOf(' ');
            if (space > 0 && record.startsWith("path=", space + 1)) {
                return record.substring(space + 6);
            }
        }
        return fallback;
    }

    private static byte[] readData(InputStream in, long size) throws IOException {
        if (size > Integer.MAX_VALUE - BLOCK) {
            throw new IOException("tar entry too large: " + size + " bytes");
        }
        byte[] data = new byte[(int) size];
        readFully(in, data, false);
        int padding = (int) ((BLOCK - size % BLOCK) % BLOCK);
        readFully(in, new byte[padding], false);
        return data;
    }

    private static void verifyChecksum(byte[] h) throws IOException {
        long expected = octal(h, 148, 8);
        long sum = 0;
        for (int i = 0; i < BLOCK; i++) {
            sum += (i >= 148 && i < 156) ? ' ' : (h[i] & 0xff); // the checksum field counts as spaces
        }
        if (sum != expected) {
            throw new IOException("corrupt tar header (checksum " + sum + " != " + expected + ")");
        }
    }

    private static long octal(byte[] h, int off, int len) throws IOException {
        int i = off;
        int end = off + len;
        while (i < end && h[i] == ' ') {
            i++; // some writers right-align the number with leading spaces
        }
        long v = 0;
        for (; i < end && h[i] != 0 && h[i] != ' '; i++) {
            if (h[i] < '0' || h[i] > '7') {
                throw new IOException("corrupt tar header: bad octal field at offset " + off);
            }
            v = (v << 3) + (h[i] - '0');
        }
        return v;
    }

    private static String cString(byte[] b, int off, int len) {
        int end = off;
        while (end < off + len && b[end] != 0) {
            end++;
        }
        return new String(b, off, end - off, StandardCharsets.UTF_8);
    }

    private static boolean isZero(byte[] b) {
        for (byte x : b) {
            if (x != 0) {
                return false;
            }
        }
        return true;
    }

    /** Fills {@code buf}; returns false only when {@code eofOk} and the stream ended before the first byte. */
    private static boolean readFully(InputStream in, byte[] buf, boolean eofOk) throws IOException {
        int n = 0;
        while (n < buf.length) {
            int r = in.read(buf, n, buf.length - n);
            if (r < 0) {
                if (eofOk && n == 0) {
                    return false;
                }
                throw new EOFException("truncated tar stream");
            }
            n += r;
        }
        return true;
    }
}
