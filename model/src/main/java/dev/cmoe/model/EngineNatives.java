package dev.cmoe.model;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.Properties;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Which PyTorch natives the engine loads: the CPU build that ships on the class path, or a local
 * libtorch (a CUDA one for GPU workers) named by {@value #ENV}. Maven Central carries no CUDA
 * build of the PyTorch version this build's JNI is compiled against, so a GPU machine brings its
 * own libtorch and this checks it against the JNI before the engine first loads, where a mismatch
 * would otherwise surface as an unreadable linker error or a crash inside the engine.
 */
public final class EngineNatives {
    /** The environment variable naming a local libtorch: its root or its {@code lib} folder. */
    public static final String ENV = "CMOE_LIBTORCH";

    private static final String LIB = "libtorch.so";
    private static final String CUDA_LIB = "libtorch_cuda.so";
    private static final String JNI_PROPERTIES = "/jnilib/pytorch.properties";
    private static final String PLATFORM = "linux-x86_64";
    private static final Pattern VERSION = Pattern.compile("(\\d+\\.\\d+\\.\\d+)(?:[.a-z0-9]*)?(?:\\+([a-z0-9]+))?");
    private static final Pattern PY_VERSION = Pattern.compile("(?m)^__version__\\s*=\\s*['\"]([^'\"]+)['\"]");

    private EngineNatives() {
    }

    /**
     * A local libtorch checked against this build's JNI.
     *
     * @param lib the folder holding {@code libtorch.so}
     * @param version its PyTorch version, e.g. 2.7.1
     * @param flavor the JNI flavour it needs: {@code cpu} or a CUDA one such as {@code cu128}
     */
    public record Libtorch(Path lib, String version, String flavor) {
        /** Whether this libtorch drives GPUs. */
        public boolean cuda() {
            return flavor.startsWith("cu");
        }
    }

    /**
     * Applies {@value #ENV} when it is set: checks the libtorch it names and tells DJL to load it
     * (its {@code PYTORCH_VERSION}, {@code PYTORCH_FLAVOR} and library path). Must run before the
     * engine first loads; without the variable nothing changes and the class path's CPU natives load.
     *
     * @return the libtorch chosen, or empty for the class path's
     * @throws IllegalArgumentException naming the variable and what is wrong with the folder
     */
    public static Optional<Libtorch> configureFromEnvironment() {
        String value = System.getenv(ENV);
        if (value == null || value.isBlank()) {
            return Optional.empty();
        }
        Libtorch lib;
        try {
            lib = inspect(Path.of(value.strip()), jniVersion(), EngineNatives::jniHasFlavor);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(ENV + "=" + value + ": " + e.getMessage(), e);
        }
        // DJL takes each of these from the environment first, then from a system property as set here:
        // an environment that says otherwise would load another libtorch than the one checked
        String[][] settings = {{"PYTORCH_LIBRARY_PATH", lib.lib().toString()}, {"PYTORCH_VERSION", lib.version()},
            {"PYTORCH_FLAVOR", lib.flavor()}};
        for (String[] kv : settings) {
            String env = System.getenv(kv[0]);
            if (env != null && !env.equals(kv[1])) {
                throw new IllegalArgumentException(ENV + "=" + value + " means " + kv[0] + "=" + kv[1]
                        + ", but the environment sets " + kv[0] + "=" + env + ": unset it");
            }
        }
        System.setProperty("PYTORCH_LIBRARY_PATH", lib.lib().toString());
        System.setProperty("PYTORCH_VERSION", lib.version());
        System.setProperty("PYTORCH_FLAVOR", lib.flavor());
        return Optional.of(lib);
    }

    /**
     * Checks the libtorch at {@code dir} (its root or its {@code lib} folder) against a JNI of
     * {@code jniVersion} (e.g. 2.7.1-0.36.0) that ships the flavours {@code hasFlavor} accepts.
     * The version is read from the root's {@code build-version} (a libtorch archive) or from the
     * {@code version.py} beside {@code lib} (a Python wheel's {@code torch/lib}).
     *
     * @throws IllegalArgumentException naming what is missing or does not match
     */
    public static Libtorch inspect(Path dir, String jniVersion, Predicate<String> hasFlavor) {
        if (!Files.isDirectory(dir)) {
            throw new IllegalArgumentException("no such folder");
        }
        Path lib = Files.isRegularFile(dir.resolve("lib").resolve(LIB)) ? dir.resolve("lib") : dir;
        if (!Files.isRegularFile(lib.resolve(LIB))) {
            throw new IllegalArgumentException("holds no " + LIB + " (nor does its lib/): point it at a libtorch"
                    + " folder, e.g. the one unpacked from libtorch-cxx11-abi-shared-with-deps-*.zip, or torch/lib");
        }
        String declared = declaredVersion(lib).orElseThrow(() -> new IllegalArgumentException("cannot tell the"
                + " PyTorch version of " + lib + ": neither " + lib.resolveSibling("build-version") + " nor "
                + lib.resolveSibling("version.py") + " exists"));
        Matcher m = VERSION.matcher(declared);
        if (!m.matches()) {
            throw new IllegalArgumentException("PyTorch version '" + declared + "' of " + lib + " is not N.N.N[+flavour]");
        }
        String version = m.group(1);
        String needed = jniVersion.contains("-") ? jniVersion.substring(0, jniVersion.indexOf('-')) : jniVersion;
        if (!version.equals(needed)) {
            throw new IllegalArgumentException("libtorch " + declared + " at " + lib + ", but this build's JNI"
                    + " (pytorch-jni " + jniVersion + ") is compiled against PyTorch " + needed + ": use libtorch "
                    + needed);
        }
        boolean cudaLib = Files.isRegularFile(lib.resolve(CUDA_LIB));
        String flavor = m.group(2) != null ? m.group(2) : cudaLib ? null : "cpu";
        if (flavor == null) {
            throw new IllegalArgumentException(lib + " holds " + CUDA_LIB + " but its version '" + declared
                    + "' names no CUDA flavour (e.g. " + version + "+cu128)");
        }
        if (flavor.startsWith("cu") != cudaLib) {
            throw new IllegalArgumentException("libtorch " + declared + " at " + lib + (cudaLib ? " holds " : " lacks ")
                    + CUDA_LIB + ", which its flavour '" + flavor + "' contradicts");
        }
        if (!hasFlavor.test(flavor)) {
            throw new IllegalArgumentException("libtorch " + declared + " is flavour " + flavor + ", but this build's"
                    + " JNI ships " + String.join(", ", shippedFlavors(hasFlavor)) + " for " + PLATFORM);
        }
        return new Libtorch(lib.toAbsolutePath(), version, flavor);
    }

    private static Optional<String> declaredVersion(Path lib) {
        try {
            Path build = lib.resolveSibling("build-version");
            if (Files.isRegularFile(build)) {
                return Optional.of(Files.readString(build, StandardCharsets.UTF_8).strip().toLowerCase(Locale.ROOT));
            }
            Path py = lib.resolveSibling("version.py");
            if (Files.isRegularFile(py)) {
                Matcher m = PY_VERSION.matcher(Files.readString(py, StandardCharsets.UTF_8));
                return m.find() ? Optional.of(m.group(1).toLowerCase(Locale.ROOT)) : Optional.empty();
            }
            return Optional.empty();
        } catch (IOException e) {
            throw new UncheckedIOException("reading the version of " + lib, e);
        }
    }

    private static List<String> shippedFlavors(Predicate<String> hasFlavor) {
        List<String> out = new ArrayList<>();
        for (String f : List.of("cpu", "cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130")) {
            if (hasFlavor.test(f)) {
                out.add(f);
            }
        }
        return out;
    }

    /** The version of the JNI on the class path, e.g. 2.7.1-0.36.0. */
    static String jniVersion() {
        try (InputStream in = EngineNatives.class.getResourceAsStream(JNI_PROPERTIES)) {
            if (in == null) {
                throw new IllegalStateException("no PyTorch JNI on the class path (" + JNI_PROPERTIES + ")");
            }
            Properties p = new Properties();
            p.load(in);
            String v = p.getProperty("jni_version");
            if (v == null) {
                throw new IllegalStateException(JNI_PROPERTIES + " names no jni_version");
            }
            return v;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Whether the class path's JNI has a build for {@code flavor} on this platform. */
    static boolean jniHasFlavor(String flavor) {
        return EngineNatives.class.getResource("/jnilib/" + PLATFORM + "/" + flavor + "/libdjl_torch.so") != null;
    }
}
