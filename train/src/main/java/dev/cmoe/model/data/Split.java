package dev.cmoe.model.data;

import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/** The three corpus partitions, assigned by document position so every machine gets the same split. */
public enum Split {
    TRAIN("train.txt"),
    VALIDATION("validation.txt"),
    TEST("test.txt");

    private final String fileName;

    Split(String fileName) {
        this.fileName = fileName;
    }

    /** The plain-text file of this split inside a data directory. */
    public String fileName() {
        return fileName;
    }

    /** The lower-case name used in the manifest. */
    public String key() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }

    /**
     * The split of the document at 0-based position {@code index} in the sorted id list: every tenth
     * document (0, 10, ...) is test, the one after it validation, the rest train. Interleaving by
     * position spreads all fifteen Brown genres over every split, which a contiguous cut would not.
     */
    public static Split ofIndex(int index) {
        if (index < 0) {
            throw new IllegalArgumentException("document index must be >= 0, got " + index);
        }
        return switch (index % 10) {
            case 0 -> TEST;
            case 1 -> VALIDATION;
            default -> TRAIN;
        };
    }

    /** Assigns the ids (already in their canonical order) to splits, keeping that order in each. */
    public static Map<Split, List<String>> assign(List<String> orderedIds) {
        Map<Split, List<String>> out = new EnumMap<>(Split.class);
        for (Split s : values()) {
            out.put(s, new ArrayList<>());
        }
        for (int i = 0; i < orderedIds.size(); i++) {
            out.get(ofIndex(i)).add(orderedIds.get(i));
        }
        out.replaceAll((s, ids) -> Collections.unmodifiableList(ids));
        return Collections.unmodifiableMap(out);
    }
}
