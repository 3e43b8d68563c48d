package dev.cmoe.model.arch;

import dev.cmoe.model.config.ConfigFields;

/** The Qwen families' sliding-window rule: off unless {@code use_sliding_window}, then from max_window_layers on. */
final class QwenWindow {
    private QwenWindow() {
    }

    static int size(ConfigFields f) {
        return f.optBool("use_sliding_window", false) ? f.optPositiveInt("sliding_window", 0) : 0;
    }

    static int fromLayer(ConfigFields f) {
        return size(f) == 0 ? 0 : f.optInt("max_window_layers", 0);
    }
}
