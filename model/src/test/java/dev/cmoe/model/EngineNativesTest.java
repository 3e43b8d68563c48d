package dev.cmoe.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A local libtorch is accepted only when its version and flavour match the JNI, read from its own files. */
class EngineNativesTest {
    private static final String JNI = "2.7.1-0.36.0";
    private static final Predicate<String> SHIPPED = Set.of("cpu", "cu128")::contains;

    @TempDir
    Path tmp;

    /** An unpacked libtorch archive: {@code root/lib/*.so} and {@code root/build-version}. */
    private Path archive(String name, String version, boolean cuda) throws IOException {
        Path root = Files.createDirectories(tmp.resolve(name));
        Path lib = Files.createDirectories(root.resolve("lib"));
        Files.writeString(lib.resolve("libtorch.so"), "");
        if (cuda) {
            Files.writeString(lib.resolve("libtorch_cuda.so"), "");
        }
        Files.writeString(root.resolve("build-version"), version + "\n");
        return root;
    }

    @Test
    void acceptsAMatchingArchiveByItsRootOrItsLibFolder() throws IOException {
        Path root = archive("libtorch", "2.7.1+cu128", true);
        EngineNatives.Libtorch byRoot = EngineNatives.inspect(root, JNI, SHIPPED);
        assertEquals(root.resolve("lib").toAbsolutePath(), byRoot.lib());
        assertEquals("2.7.1", byRoot.version());
        assertEquals("cu128", byRoot.flavor());
        assertTrue(byRoot.cuda());
        assertEquals(byRoot, EngineNatives.inspect(root.resolve("lib"), JNI, SHIPPED));
    }

    @Test
    void readsAPythonWheelsVersionFile() throws IOException {
        Path torch = Files.createDirectories(tmp.resolve("site-packages/torch"));
        Path lib = Files.createDirectories(torch.resolve("lib"));
        Files.writeString(lib.resolve("libtorch.so"), "");
        Files.writeString(torch.resolve("version.py"), "from typing import Optional\n__version__ = '2.7.1+cpu'\n"
                + "cuda: Optional[str] = None\n");
        EngineNatives.Libtorch t = EngineNatives.inspect(lib, JNI, SHIPPED);
        assertEquals("cpu", t.flavor());
        assertFalse(t.cuda());
    }

    @Test
    void aVersionWithoutFlavourIsCpuUnlessTheCudaLibraryIsThere() throws IOException {
        assertEquals("cpu", EngineNatives.inspect(archive("plain", "2.7.1", false), JNI, SHIPPED).flavor());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> EngineNatives.inspect(archive("unnamed-cuda", "2.7.1", true), JNI, SHIPPED));
        assertTrue(e.getMessage().contains("names no CUDA flavour"), e.getMessage());
    }

    @Test
    void refusesAnotherPyTorchVersionNamingBoth() throws IOException {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> EngineNatives.inspect(archive("new", "2.11.0+cu130", true), JNI, SHIPPED));
        assertTrue(e.getMessage().contains("2.11.0+cu130") && e.getMessage().contains("use libtorch 2.7.1"),
                e.getMessage());
    }

    @Test
    void refusesAFlavourTheJniDoesNotShipListingThoseItDoes() throws IOException {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> EngineNatives.inspect(archive("cu126", "2.7.1+cu126", true), JNI, SHIPPED));
        assertTrue(e.getMessage().contains("flavour cu126") && e.getMessage().contains("ships cpu, cu128"),
                e.getMessage());
    }

    @Test
    void refusesAFlavourThatContradictsTheLibraries() throws IOException {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> EngineNatives.inspect(archive("liar", "2.7.1+cu128", false), JNI, SHIPPED));
        assertTrue(e.getMessage().contains("lacks libtorch_cuda.so"), e.getMessage());
    }

    @Test
    void namesWhatIsMissing() throws IOException {
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> EngineNatives.inspect(tmp.resolve("absent"), JNI, SHIPPED)).getMessage().contains("no such"));
        Path empty = Files.createDirectories(tmp.resolve("empty"));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> EngineNatives.inspect(empty, JNI, SHIPPED)).getMessage().contains("holds no libtorch.so"));
        Path noVersion = archive("unversioned", "x", false);
        Files.delete(noVersion.resolve("build-version"));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> EngineNatives.inspect(noVersion, JNI, SHIPPED)).getMessage().contains("cannot tell"));
        Path garbled = archive("garbled", "two point seven", false);
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> EngineNatives.inspect(garbled, JNI, SHIPPED)).getMessage().contains("is not N.N.N"));
    }

    @Test
    void theClassPathsJniIsTheOneTheBuildPins() {
        // the pom pins pytorch-jni; its cpu build for this platform is what the tests run on
        assertTrue(EngineNatives.jniVersion().matches("\\d+\\.\\d+\\.\\d+-\\d+\\.\\d+\\.\\d+"),
                EngineNatives.jniVersion());
        assertTrue(EngineNatives.jniHasFlavor("cpu"));
        assertFalse(EngineNatives.jniHasFlavor("cu999"));
    }
}
