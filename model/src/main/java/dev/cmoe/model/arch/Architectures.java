package dev.cmoe.model.arch;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.cmoe.model.config.ModelConfigException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The registry of decoder families, keyed by config.json's {@code model_type} and checked against
 * its {@code architectures}. The engine never branches on a model name outside this package:
 * adding a family is one description file listed here, plus a fixture.
 */
public final class Architectures {
    private static final Map<String, Architecture> BY_TYPE = new LinkedHashMap<>();

    static {
        for (Architecture a : List.of(Llama.ARCH, Mistral.ARCH, Qwen2.ARCH, Qwen3.ARCH)) {
            BY_TYPE.put(a.modelType(), a);
        }
    }

    /** Families that are Mixture-of-Experts already: carving them makes no sense, so they get their own message. */
    private static final Set<String> ALREADY_MOE = Set.of("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2",
            "deepseek_v3", "dbrx", "olmoe", "phimoe", "granitemoe", "jamba", "jetmoe", "gpt_oss", "llama4",
            "minimax", "hunyuan_v1_moe", "ernie4_5_moe", "glm4_moe", "dots1", "switch_transformers", "nllb_moe");

    private Architectures() {
    }

    /** The model types this engine runs, in registry order. */
    public static List<String> supported() {
        return new ArrayList<>(BY_TYPE.keySet());
    }

    /**
     * The family of a config: its {@code model_type} must be registered, and every class named in
     * {@code architectures} must be that family's causal LM.
     */
    public static Architecture resolve(JsonObject config, String modelType, String source) {
        Architecture a = BY_TYPE.get(modelType);
        if (a == null) {
            if (ALREADY_MOE.contains(modelType)) {
                throw new ModelConfigException(source + ": model_type '" + modelType + "' is already a "
                        + "Mixture-of-Experts model; cmoe carves and serves dense decoders (supported: "
                        + String.join(", ", supported()) + ")");
            }
            throw new ModelConfigException(source + ": unsupported model_type '" + modelType + "' (supported: "
                    + String.join(", ", supported()) + ")");
        }
        JsonElement classes = config.get("architectures");
        if (classes != null && !classes.isJsonNull()) {
            if (!classes.isJsonArray()) {
                throw new ModelConfigException(source + ": architectures must be a list of class names, got " + classes);
            }
            for (JsonElement c : classes.getAsJsonArray()) {
                String name = c.isJsonPrimitive() ? c.getAsString() : String.valueOf(c);
                if (!a.classNames().contains(name)) {
                    throw new ModelConfigException(source + ": architectures names '" + name + "', but model_type '"
                            + modelType + "' runs only " + a.classNames());
                }
            }
        }
        return a;
    }
}
