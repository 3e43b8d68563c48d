package dev.cmoe.model.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** Facts about the machine that a test needs, and the failure that says what to install when one is missing. */
public final class Environment {
    private Environment() {
    }

    /** Whether {@code npm --version} runs: the corpus can only be fetched with npm. */
    public static boolean npmOnPath() {
        try {
            Process p = new ProcessBuilder("npm", "--version").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /**
     * Fails the calling test unless npm runs: a test that needs it must not pass by skipping.
     *
     * @param why what the test needs npm for, e.g. "to fetch the Brown corpus"
     */
    public static void requireNpm(String why) {
        if (!npmOnPath()) {
            throw new AssertionError("this test needs npm " + why + ", but `npm --version` does not run: install"
                    + " Node.js and npm (e.g. `apt-get install nodejs npm`) and put npm on PATH");
        }
    }

    /** The repository root: surefire runs each module's tests in the module directory. */
    public static Path repoRoot() {
        Path here = Path.of("").toAbsolutePath();
        for (Path p = here; p != null; p = p.getParent()) {
            if (Files.exists(p.resolve("mvnw")) && Files.isDirectory(p.resolve("model"))) {
                return p;
            }
        }
        throw new IllegalStateException("no repository root above " + here);
    }
}
