package dev.cmoe.deploy;

import dev.cmoe.deploy.cli.AdaptCommand;
import dev.cmoe.deploy.cli.BaselinesCommand;
import dev.cmoe.deploy.cli.BenchCommand;
import dev.cmoe.deploy.cli.BenchDecodeCommand;
import dev.cmoe.deploy.cli.BenchDispatchCommand;
import dev.cmoe.deploy.cli.BenchEngineCommand;
import dev.cmoe.deploy.cli.ClientCommand;
import dev.cmoe.deploy.cli.CarveCommand;
import dev.cmoe.deploy.cli.DataCommand;
import dev.cmoe.deploy.cli.DemoCommand;
import dev.cmoe.deploy.cli.EvalPplCommand;
import dev.cmoe.deploy.cli.InfoCommand;
import dev.cmoe.deploy.cli.SynthCommand;
import dev.cmoe.deploy.cli.RebalanceCommand;
import dev.cmoe.deploy.cli.ServeCommand;
import dev.cmoe.deploy.cli.WorkerCommand;
import dev.cmoe.deploy.cli.TrainCommand;
import dev.cmoe.deploy.cli.GenerateCommand;
import dev.cmoe.deploy.cli.GgufCommand;
import dev.cmoe.deploy.cli.GpuCheckCommand;
import dev.cmoe.deploy.cli.HealthCommand;
import dev.cmoe.deploy.cli.PlanCommand;
import dev.cmoe.model.EngineNatives;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code cmoe} command line: one picocli subcommand per job. */
@Command(name = "cmoe", mixinStandardHelpOptions = true, version = "cmoe 0.1.0",
        description = "Carve a dense LLaMA-family model into a Mixture-of-Experts and serve it.",
        subcommands = {DemoCommand.class, DataCommand.class, TrainCommand.class, CarveCommand.class,
            AdaptCommand.class, InfoCommand.class, SynthCommand.class, GenerateCommand.class, EvalPplCommand.class, BaselinesCommand.class, ServeCommand.class,
            WorkerCommand.class, RebalanceCommand.class, ClientCommand.class, PlanCommand.class,
            HealthCommand.class, BenchCommand.class, BenchEngineCommand.class, BenchDecodeCommand.class, BenchDispatchCommand.class,
            GgufCommand.class, GpuCheckCommand.class,
            CommandLine.HelpCommand.class})
public final class Cli {

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs the command line and returns its exit code; errors print as one line, not a stack trace. */
    public static int run(String... args) {
        CommandLine cli = new CommandLine(new Cli());
        cli.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            commandLine.getErr().println("cmoe " + commandLine.getCommandName() + ": " + message(e));
            if (System.getenv("CMOE_DEBUG") != null) {
                e.printStackTrace(commandLine.getErr());
            }
            return 2;
        });
        try {
            // before anything loads the engine: which natives it loads is decided once, here
            EngineNatives.configureFromEnvironment();
        } catch (RuntimeException e) {
            cli.getErr().println("cmoe: " + e.getMessage());
            return 2;
        }
        try {
            return cli.execute(args);
        } catch (OutOfMemoryError e) {
            // picocli hands only exceptions to the handler above; a full heap is the user's to size
            cli.getErr().println("cmoe: out of Java heap (" + e.getMessage() + ", at most "
                    + Runtime.getRuntime().maxMemory() / (1 << 20) + " MiB): give the JVM more with"
                    + " CMOE_JAVA_OPTS=-Xmx<size>");
            return 3;
        }
    }

    private static String message(Throwable e) {
        String m = e.getMessage();
        return m == null || m.isBlank() ? e.getClass().getSimpleName() : m;
    }
}
