package dev.cmoe.model.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class TarReaderTest {

    @Test
    void readsRegularFilesAndSkipsDirectories() throws IOException {
        byte[] exactBlock = new byte[512];
        byte[] odd = new byte[1000];
        for (int i = 0; i < odd.length; i++) {
            odd[i] = (byte) (i * 31);
        }
        String deep = "package/" + "d".repeat(60) + "/" + "n".repeat(80);
        String gnu = "package/" + "g".repeat(120);
        byte[] tar = new TestTar()
                .directory("package/")
                .file("package/empty", new byte[0])
                .file("package/block", exactBlock)
                .file("package/odd", odd)
                .file(deep, "prefix field")
                .gnuLongName(gnu, "long link")
                .file("package/ca01", "The/at jury/nn ./.\n")
                .tar();
        Map<String, byte[]> files = TarReader.readRegularFiles(new ByteArrayInputStream(tar));
        assertEquals(List.of("package/empty", "package/block", "package/odd", deep, gnu, "package/ca01"),
                List.copyOf(files.keySet()));
        assertEquals(0, files.get("package/empty").length);
        assertArrayEquals(exactBlock, files.get("package/block"));
        assertArrayEquals(odd, files.get("package/odd"));
        assertEquals("prefix field", new String(files.get(deep), StandardCharsets.UTF_8));
        assertEquals("long link", new String(files.get(gnu), StandardCharsets.UTF_8));
        assertEquals("The/at jury/nn ./.\n", new String(files.get("package/ca01"), StandardCharsets.UTF_8));
    }

    @Test
    void rejectsCorruptHeaderAndTruncatedData() {
        byte[] tar = new TestTar().file("package/a", "x".repeat(700)).tar();
        byte[] corrupt = tar.clone();
        corrupt[3] ^= 1; // a name byte: the header checksum no longer matches
        IOException e = assertThrows(IOException.class,
                () -> TarReader.readRegularFiles(new ByteArrayInputStream(corrupt)));
        assertEquals(true, e.getMessage().contains("checksum"), e.getMessage());
        byte[] truncated = java.util.Arrays.copyOf(tar, 512 + 100);
        assertThrows(IOException.class, () -> TarReader.readRegularFiles(new ByteArrayInputStream(truncated)));
    }
}
