package dev.cmoe.model.safetensors;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Coverage-guided fuzzing of the safetensors reader: whatever the bytes, opening and reading every
 * tensor either works or throws {@link SafetensorsException}; nothing else escapes, and a file that
 * opens reads back exactly the values its header promises. Regression inputs (seeds and any crash
 * found) live in {@code src/test/resources/dev/cmoe/model/safetensors/SafetensorsFuzzTestInputs/}.
 */
class SafetensorsFuzzTest {
    private static final Path DIR;

    static {
        try {
            DIR = Files.createTempDirectory("cmoe-fuzz-safetensors");
            DIR.toFile().deleteOnExit();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @FuzzTest(maxDuration = "5s")
    void openAndReadEveryTensor(byte[] bytes) throws IOException {
        Path file = DIR.resolve("input.safetensors");
        Files.write(file, bytes);
        SafetensorsFile f;
        try {
            f = SafetensorsFile.open(file);
        } catch (SafetensorsException expected) {
            return;
        }
        try (f) {
            long dataBytes = 0;
            for (TensorInfo t : f.tensors().values()) {
                FloatBuffer values = f.readF32(t.name());
                long numel = t.byteLength() / t.dtype().byteSize();
                if (values.remaining() != numel) {
                    throw new AssertionError(t.name() + ": read " + values.remaining() + " values, header says " + numel);
                }
                dataBytes += t.byteLength();
            }
            // The layout check makes the data section exactly the tensors' bytes.
            long headerEnd = bytes.length - dataBytes;
            if (headerEnd < 8) {
                throw new AssertionError("tensors hold " + dataBytes + " of a " + bytes.length + "-byte file");
            }
        } finally {
            Files.deleteIfExists(file);
        }
    }
}
