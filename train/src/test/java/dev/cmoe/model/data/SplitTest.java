package dev.cmoe.model.data;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

class SplitTest {

    @Test
    void splitIsDeterministicDisjointAndComplete() {
        List<String> ids = new ArrayList<>();
        for (int i = 0; i < 37; i++) {
            ids.add(String.format("doc%03d", i));
        }
        Map<Split, List<String>> a = Split.assign(ids);
        assertEquals(a, Split.assign(List.copyOf(ids)));
        assertEquals(List.of("doc000", "doc010", "doc020", "doc030"), a.get(Split.TEST));
        assertEquals(List.of("doc001", "doc011", "doc021", "doc031"), a.get(Split.VALIDATION));
        assertEquals(29, a.get(Split.TRAIN).size());
        Set<String> union = new HashSet<>();
        a.values().forEach(union::addAll);
        assertEquals(ids.size(), union.size(), "splits overlap or lose documents");
        assertEquals(new HashSet<>(ids), union);
    }

    @Test
    void brownIdsAreTheFiveHundredSortedFileNames() {
        List<String> ids = BrownCorpus.documentIds();
        assertEquals(500, ids.size());
        assertEquals("ca01", ids.get(0));
        assertEquals("cr09", ids.get(499));
        assertEquals(ids.stream().sorted().toList(), ids);
        assertEquals(500, new HashSet<>(ids).size());
        Map<Split, List<String>> s = Split.assign(ids);
        assertEquals(400, s.get(Split.TRAIN).size());
        assertEquals(50, s.get(Split.VALIDATION).size());
        assertEquals(50, s.get(Split.TEST).size());
        assertTrue(s.get(Split.TEST).contains("ca01"));
    }

    @Test
    void defaultDataDirHonoursCmoeData() {
        assertEquals(Path.of("/data/x"), BrownCorpus.defaultDataDir("/data/x", "/home/u"));
        assertEquals(Path.of("/home/u/.cache/cmoe/data"), BrownCorpus.defaultDataDir(null, "/home/u"));
        assertEquals(Path.of("/home/u/.cache/cmoe/data"), BrownCorpus.defaultDataDir(" ", "/home/u"));
    }
}
