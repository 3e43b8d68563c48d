package dev.cmoe.carve.adapt;

import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Where an adaptation run stands, saved as {@value #FILE} in its output directory: enough to
 * continue it exactly (with the adapters and optimizer moments in {@value #TENSORS} while the run
 * is unfinished) and to refuse resuming it with different settings.
 *
 * @param step steps done
 * @param optimizerStep the optimizer's step count (its bias correction)
 * @param run what identifies the run: input model and every setting that changes the result
 * @param resumable whether {@value #TENSORS} is there (dropped once the run is finished)
 * @param seconds time spent in training steps so far
 * @param before validation before the first step, or null
 * @param history the report's history so far
 * @param pending the steps since the last history entry, so a resumed run writes the same history
 */
record AdaptState(int step, long optimizerStep, JsonObject run, boolean resumable, double seconds,
                  AdaptReport.Eval before, List<AdaptReport.Entry> history, Pending pending) {
    static final String FILE = "adapt_state.json";
    static final String TENSORS = "adapt_state.safetensors";

    /**
     * Steps not yet summarised in the history.
     *
     * @param loads (layers, N_r) tokens routed to each expert during those steps
     */
    record Pending(int steps, double lossSum, long[][] loads, int skipped) {
        /** The same with one more skipped (non-finite) step, which adds no loss and no loads. */
        Pending skip() {
            return new Pending(steps, lossSum, loads, skipped + 1);
        }
    }

    AdaptState {
        history = List.copyOf(history);
    }

    /** The state in {@code out}, or null when there is none. */
    static AdaptState read(Path out) {
        Path f = out.resolve(FILE);
        if (!Files.isRegularFile(f)) {
            return null;
        }
        try {
            return AdaptReport.fromTree(JsonParser.parseString(Files.readString(f, StandardCharsets.UTF_8)),
                    AdaptState.class);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + f + ": " + e.getMessage(), e);
        } catch (JsonParseException | IllegalStateException e) {
            throw new IllegalArgumentException(f + " is not a valid adaptation state (" + e.getMessage()
                    + "); choose another --out", e);
        }
    }

    void write(Path dir) throws IOException {
        Files.writeString(dir.resolve(FILE), AdaptReport.pretty(AdaptReport.toTree(this)), StandardCharsets.UTF_8);
    }
}
