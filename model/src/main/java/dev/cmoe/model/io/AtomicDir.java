package dev.cmoe.model.io;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * Writes a whole output directory so that it appears only complete: everything goes to a
 * sibling temporary directory that is renamed into place at the end, and a failure removes it.
 * A reader never sees a half-written model, and an interrupted run leaves the old one intact.
 */
public final class AtomicDir {
    /** Fills a staging directory; may throw anything. */
    @FunctionalInterface
    public interface Writer {
        void writeInto(Path staging) throws IOException;
    }

    private AtomicDir() {
    }

    /**
     * Creates {@code target} from what {@code writer} puts in a staging directory. An existing
     * {@code target} is an error unless {@code replace} is set, in which case it is swapped out
     * only after the new content is complete.
     */
    public static void write(Path target, boolean replace, Writer writer) {
        Path abs = target.toAbsolutePath().normalize();
        if (Files.exists(abs) && !replace) {
            throw new IllegalArgumentException("output directory " + target + " already exists (use --force to replace it)");
        }
        Path parent = abs.getParent();
        Path staging = parent.resolve("." + abs.getFileName() + ".tmp-" + ProcessHandle.current().pid() + "-"
                + System.nanoTime());
        try {
            Files.createDirectories(parent);
            Files.createDirectory(staging);
            writer.writeInto(staging);
            Path old = null;
            if (Files.exists(abs)) {
                old = parent.resolve("." + abs.getFileName() + ".old-" + System.nanoTime());
                move(abs, old);
            }
            move(staging, abs);
            if (old != null) {
                deleteTree(old);
            }
        } catch (IOException e) {
            deleteTree(staging);
            throw new UncheckedIOException("cannot write " + target + ": " + e.getMessage(), e);
        } catch (RuntimeException | Error e) {
            deleteTree(staging);
            throw e;
        }
    }

    private static void move(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE);
        } catch (AtomicMoveNotSupportedException | FileAlreadyExistsException e) {
            Files.move(from, to);
        }
    }

    /** Removes a directory tree, quietly: used only for cleaning up after ourselves. */
    public static void deleteTree(Path dir) {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(dir)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort: a leftover temp file is harmless and named as ours
                }
            });
        } catch (IOException ignored) {
            // same as above
        }
    }
}
