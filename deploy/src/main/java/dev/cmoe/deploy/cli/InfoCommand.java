package dev.cmoe.deploy.cli;

import dev.cmoe.model.ModelSummary;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

/** {@code cmoe info}: what a model directory holds, read from its config and headers, before carving or serving it. */
@Command(name = "info", mixinStandardHelpOptions = true,
        description = "Architecture, sizes, parameters, stored dtype, context and (carved) experts of a model "
                + "directory; reads no weights.")
public final class InfoCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "MODEL", description = "Model directory (config.json, *.safetensors).")
    Path model;

    @Override
    public Integer call() {
        System.out.print(ModelSummary.of(model).render());
        return 0;
    }
}
