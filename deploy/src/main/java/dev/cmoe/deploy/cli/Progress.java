package dev.cmoe.deploy.cli;

import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/** One look for every progress bar of the command line: stderr, ASCII, rate and ETA. */
final class Progress {
    private Progress() {
    }

    static ProgressBar bar(String task, long total, String unit) {
        return bar(task, total, unit, 0);
    }

    /** A bar that starts at {@code done} of {@code total} (a resumed job), with its speed counted from there. */
    static ProgressBar bar(String task, long total, String unit, long done) {
        return new ProgressBarBuilder()
                .startsFrom(done, java.time.Duration.ZERO)
                .setTaskName(task)
                .setInitialMax(total)
                .setStyle(ProgressBarStyle.ASCII)
                .setUnit(" " + unit, 1)
                .showSpeed()
                .setConsumer(new me.tongfei.progressbar.ConsoleProgressBarConsumer(System.err))
                .build();
    }
}
