package dev.cmoe.server.metrics;

import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Process memory on the metrics endpoint: the JVM's pools and the resident set size. Most of a
 * model's memory is native (engine tensors), invisible to the heap figures, so load and soak
 * tests need the RSS to tell "bounded" from "leaking".
 */
public final class ProcessMetrics {
    private static final Path STATM = Path.of("/proc/self/statm");
    private static final long PAGE = 4096; // Linux x86-64 and arm64 with 4 KiB pages

    private ProcessMetrics() {
    }

    /** Registers {@code jvm.memory.*} and {@code process.resident.memory} (bytes, NaN off Linux). */
    public static void bindTo(MeterRegistry registry) {
        new JvmMemoryMetrics().bindTo(registry);
        Gauge.builder("process.resident.memory", ProcessMetrics::residentBytes).baseUnit("bytes")
                .description("resident set size of the server process, native tensors included").register(registry);
    }

    /** The resident set size from /proc/self/statm, or NaN where there is none. */
    public static double residentBytes() {
        try {
            String[] fields = Files.readString(STATM).trim().split("\\s+");
            return Long.parseLong(fields[1]) * PAGE;
        } catch (IOException | RuntimeException e) {
            return Double.NaN;
        }
    }
}
