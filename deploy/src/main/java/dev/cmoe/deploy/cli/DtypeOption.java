package dev.cmoe.deploy.cli;

import dev.cmoe.model.LoadSpec;
import picocli.CommandLine.Option;

/**
 * {@code --dtype}, declared once for every command that loads a model: the dtype weights are held
 * and multiplied in, checked when the command starts so a typo fails before any loading.
 */
final class DtypeOption {
    @Option(names = "--dtype", defaultValue = "auto", description = "Dtype the weights are held and multiplied in: "
            + "auto (the checkpoint's torch_dtype, which its tensors must match), bf16, f16 or f32. Activations, "
            + "norms, softmax, router scores and logits are float32 in every case. Default: ${DEFAULT-VALUE}.")
    String dtype = "auto";

    /** {@code spec} with this dtype. */
    LoadSpec apply(LoadSpec spec) {
        return spec.withDtype(dtype);
    }
}
