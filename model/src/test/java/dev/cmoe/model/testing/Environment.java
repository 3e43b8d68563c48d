package dev.cmoe.model.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** Facts about the machine that decide whether a test can run or must be skipped with a reason. */
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
