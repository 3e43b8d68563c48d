package dev.cmoe.model.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FortunesTextTest {
    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void everyFortuneBecomesOneLineInFileNameOrder() throws Exception {
        Map<String, byte[]> files = new LinkedHashMap<>();
        files.put("./usr/share/games/fortunes/zippy", utf8("Are we having\n   FUN yet?\n%\n%\nYow!\n"));
        files.put("./usr/share/games/fortunes/art", utf8("A picture is\tworth a\nthousand words.\n%\nLast one"));
        files.put("./usr/share/games/fortunes/art.dat", utf8("binary index"));
        files.put("./usr/share/games/fortunes/ascii-art", utf8(" /\\_/\\\n( o.o )\n"));
        files.put("./usr/share/doc/fortunes/copyright", utf8("not a fortune"));
        assertEquals("A picture is worth a thousand words.\nLast one\nAre we having FUN yet?\nYow!\n",
                FortunesText.toPlain(files));
    }

    @Test
    void aPackageWithoutFortuneFilesIsRejected() {
        CorpusFetchException e = assertThrows(CorpusFetchException.class,
                () -> FortunesText.toPlain(Map.of("./usr/share/doc/x", utf8("y"))));
        assertTrue(e.getMessage().contains("no fortune files"), e.getMessage());
    }

    @Test
    void aDebThatIsNotThePinnedOneIsRejectedBeforeUnpacking(@TempDir Path dir) throws Exception {
        Path deb = dir.resolve(FortunesText.DEB);
        Files.writeString(deb, "not the package");
        CorpusFetchException e = assertThrows(CorpusFetchException.class, () -> FortunesText.fetch(dir, deb));
        assertTrue(e.getMessage().contains("integrity mismatch"), e.getMessage());
        assertTrue(Files.notExists(dir.resolve(FortunesText.FILE)));
    }
}
