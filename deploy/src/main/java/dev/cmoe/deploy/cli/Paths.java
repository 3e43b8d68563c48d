package dev.cmoe.deploy.cli;

import java.nio.file.Path;

/** Where the launcher's checkout and the shipped model are, whatever the working directory. */
final class Paths {
    private Paths() {
    }

    /** The checkout the launcher runs from ({@code CMOE_HOME}), else the working directory. */
    static Path home() {
        String home = System.getenv("CMOE_HOME");
        return Path.of(home != null && !home.isBlank() ? home : ".").toAbsolutePath().normalize();
    }

    /** The dense demo model committed with the project. */
    static Path shippedModel() {
        return home().resolve("models").resolve("brown-llama");
    }
}
