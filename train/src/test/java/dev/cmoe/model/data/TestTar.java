package dev.cmoe.model.data;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.GZIPOutputStream;

/** Builds small ustar archives byte by byte, so tar and tarball handling is tested without fixtures. */
final class TestTar {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();

    TestTar file(String path, byte[] data) {
        return entry(path, '0', data);
    }

    TestTar file(String path, String text) {
        return file(path, text.getBytes(StandardCharsets.UTF_8));
    }

    /** A path longer than 100 bytes, stored GNU style as a preceding 'L' entry. */
    TestTar gnuLongName(String path, String text) {
        entry("././@LongLink", 'L', (path + "\0").getBytes(StandardCharsets.UTF_8));
        return entry(path.substring(0, 100), '0', text.getBytes(StandardCharsets.UTF_8));
    }

    TestTar directory(String path) {
        return entry(path, '5', new byte[0]);
    }

    TestTar entry(String path, char type, byte[] data) {
        byte[] h = new byte[512];
        String name = path;
        String prefix = "";
        if (path.length() > 100 && type != '0') {
            throw new IllegalArgumentException("long names only for regular files via the prefix field");
        }
        int slash = path.lastIndexOf('/', 155);
        if (path.length() > 100 && type == '0' && slash > 0 && path.length() - slash - 1 <= 100) {
            prefix = path.substring(0, slash);
            name = path.substring(slash + 1);
        }
        put(h, 0, 100, name);
        put(h, 100, 8, "0000644");
        put(h, 108, 8, "0000000");
        put(h, 116, 8, "0000000");
        put(h, 124, 12, String.format("%011o", data.length));
        put(h, 136, 12, "00000000000");
        h[156] = (byte) type;
        put(h, 257, 6, "ustar");
        put(h, 263, 2, "00");
        put(h, 345, 155, prefix);
        for (int i = 148; i < 156; i++) {
            h[i] = ' ';
        }
        long sum = 0;
        for (byte b : h) {
            sum += b & 0xff;
        }
        put(h, 148, 8, String.format("%06o", sum));
        out.writeBytes(h);
        out.writeBytes(data);
        out.writeBytes(new byte[(512 - data.length % 512) % 512]);
        return this;
    }

    byte[] tar() {
        ByteArrayOutputStream copy = new ByteArrayOutputStream();
        copy.writeBytes(out.toByteArray());
        copy.writeBytes(new byte[1024]); // the two zero blocks that end an archive
        return copy.toByteArray();
    }

    Path writeTgz(Path file) throws IOException {
        try (OutputStream o = new GZIPOutputStream(Files.newOutputStream(file))) {
            o.write(tar());
        }
        return file;
    }

    private static void put(byte[] h, int off, int len, String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        System.arraycopy(b, 0, h, off, Math.min(len, b.length));
    }
}
