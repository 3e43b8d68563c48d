package dev.cmoe.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cmoe.model.safetensors.DType;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.TinyCheckpoint;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** A NaN or infinity in any weight is refused at load, naming the tensor, in every stored dtype. */
class NonFiniteWeightsTest {
    @TempDir
    Path tmp;

    @ParameterizedTest
    @ValueSource(strings = {"F32", "F16", "BF16"})
    void aNanInTheFinalNormIsRefusedByName(String dtype) throws Exception {
        RandomModel weights = RandomModel.of(TinyCheckpoint.llama(), 3);
        weights.tensors().get("model.norm.weight").data()[5] = Float.NaN;
        Path dir = TinyCheckpoint.write(weights, tmp.resolve(dtype), DType.valueOf(dtype));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ModelDir.open(dir).close());
        assertTrue(e.getMessage().contains("'model.norm.weight'") && e.getMessage().contains("1 NaN"), e.getMessage());
    }

    @Test
    void infinitiesAreCountedAndNamed() throws Exception {
        RandomModel weights = RandomModel.of(TinyCheckpoint.llama(), 4);
        String name = "model.layers.1.mlp.down_proj.weight";
        float[] v = weights.tensors().get(name).data();
        v[0] = Float.POSITIVE_INFINITY;
        v[v.length - 1] = Float.NEGATIVE_INFINITY;
        Path dir = TinyCheckpoint.write(weights, tmp.resolve("inf"), DType.F32);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ModelDir.open(dir).close());
        assertEquals("tensor '" + name + "' holds 0 NaN and 2 infinite values (of " + v.length
                + "): the checkpoint is corrupt", e.getMessage());
    }

    @Test
    void hugeButFiniteWeightsWhoseSumOverflowsStillLoad() throws Exception {
        RandomModel weights = RandomModel.of(TinyCheckpoint.llama(), 5);
        float[] v = weights.tensors().get("model.embed_tokens.weight").data();
        v[0] = Float.MAX_VALUE;
        v[1] = Float.MAX_VALUE;
        Path dir = TinyCheckpoint.write(weights, tmp.resolve("big"), DType.F32);
        ModelDir.open(dir).close();
    }
}
