package dev.cmoe.model.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class ModelConfigTest {
    static final String LLAMA = """
            {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
             "tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}""";

    @Test
    void readsLlamaTwoShape() {
        ModelConfig c = ModelConfig.parse(LLAMA, "llama");
        assertEquals(128, c.headDim());
        assertEquals(4096, c.kvDim());
        assertFalse(c.attentionBias());
        assertEquals(List.of(2), c.eosTokenIds());
        assertEquals(0, c.slidingWindow());
    }

    @Test
    void qwen2HasBiasesAndEosLists() {
        ModelConfig c = ModelConfig.parse(LLAMA.replace("\"llama\"", "\"qwen2\"")
                .replace("\"eos_token_id\": 2", "\"eos_token_id\": [2, 7]")
                .replace("\"num_key_value_heads\": 32", "\"num_key_value_heads\": 4"), "qwen");
        assertTrue(c.attentionBias());
        assertEquals(List.of(2, 7), c.eosTokenIds());
        assertEquals(512, c.kvDim());
    }

    @Test
    void mistralWindowShorterThanContextIsKept() {
        ModelConfig c = ModelConfig.parse(LLAMA.replace("\"llama\"", "\"mistral\"")
                .replace("\"rope_theta\"", "\"sliding_window\": 1024, \"rope_theta\""), "mistral");
        assertEquals(1024, c.slidingWindow());
    }

    @Test
    void unsupportedTypeIsNamed() {
        ModelConfigException e = assertThrows(ModelConfigException.class,
                () -> ModelConfig.parse(LLAMA.replace("\"llama\"", "\"gpt2\""), "cfg.json"));
        assertTrue(e.getMessage().contains("unsupported model_type 'gpt2'"), e.getMessage());
        assertTrue(e.getMessage().contains("cfg.json"), e.getMessage());
    }

    @Test
    void missingFieldIsNamed() {
        ModelConfigException e = assertThrows(ModelConfigException.class,
                () -> ModelConfig.parse(LLAMA.replace("\"intermediate_size\": 11008,", ""), "cfg.json"));
        assertTrue(e.getMessage().contains("missing required field 'intermediate_size'"), e.getMessage());
    }

    @Test
    void badValuesAreNamed() {
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse(
                LLAMA.replace("\"num_key_value_heads\": 32", "\"num_key_value_heads\": 5"), "c"))
                .getMessage().contains("not a multiple of num_key_value_heads 5"));
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse(
                LLAMA.replace("\"silu\"", "\"gelu\""), "c")).getMessage().contains("hidden_act 'gelu'"));
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse(
                LLAMA.replace("\"rope_theta\"", "\"rope_scaling\": {\"type\": \"linear\"}, \"rope_theta\""), "c"))
                .getMessage().contains("rope_scaling"));
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse(
                LLAMA.replace("\"hidden_size\": 4096", "\"hidden_size\": -1"), "c"))
                .getMessage().contains("'hidden_size' must be positive"));
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse("[1]", "c"))
                .getMessage().contains("JSON object"));
    }
}
