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
                .getMessage().contains("'hidden_size' must be between 1 and 65536, got -1"));
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse("[1]", "c"))
                .getMessage().contains("JSON object"));
    }

    @Test
    void absurdSizesFailNamingTheFieldBeforeAnyAllocation() {
        ModelConfigException e = assertThrows(ModelConfigException.class, () -> ModelConfig.parse(
                LLAMA.replace("\"num_hidden_layers\": 32", "\"num_hidden_layers\": 2147483647"), "c"));
        assertTrue(e.getMessage().contains("'num_hidden_layers' must be between 1 and 1024, got 2147483647"),
                e.getMessage());
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse(
                LLAMA.replace("\"vocab_size\": 32000", "\"vocab_size\": 1e12"), "c"))
                .getMessage().contains("'vocab_size' must be an integer"));
    }

    @Test
    void alreadyMoeCheckpointsSaySo() {
        ModelConfigException e = assertThrows(ModelConfigException.class,
                () -> ModelConfig.parse(LLAMA.replace("\"llama\"", "\"mixtral\""), "cfg.json"));
        assertTrue(e.getMessage().contains("'mixtral' is already a Mixture-of-Experts"), e.getMessage());
        assertTrue(e.getMessage().contains("llama, mistral, qwen2, qwen3"), e.getMessage());
    }

    @Test
    void architecturesMustBeTheFamilysCausalLm() {
        ModelConfigException e = assertThrows(ModelConfigException.class, () -> ModelConfig.parse(
                LLAMA.replace("{", "{\"architectures\": [\"LlamaForSequenceClassification\"], "), "cfg.json"));
        assertTrue(e.getMessage().contains("'LlamaForSequenceClassification'"), e.getMessage());
        assertEquals("LlamaForCausalLM", ModelConfig.parse(
                LLAMA.replace("{", "{\"architectures\": [\"LlamaForCausalLM\"], "), "c").architectureName());
    }

    @Test
    void qwen3HasHeadNormsAndNoBiasByDefault() {
        ModelConfig c = ModelConfig.parse(LLAMA.replace("\"llama\"", "\"qwen3\"")
                .replace("\"rope_theta\"", "\"head_dim\": 64, \"rope_theta\""), "qwen3");
        assertTrue(c.qkNorm());
        assertFalse(c.attentionBias());
        assertFalse(c.outputBias());
        assertEquals(64 * 32, c.qDim());
    }

    @Test
    void llamaAttentionBiasCoversTheOutputProjectionQwen2DoesNot() {
        ModelConfig llama = ModelConfig.parse(LLAMA.replace("\"rope_theta\"", "\"attention_bias\": true, \"rope_theta\""),
                "c");
        assertTrue(llama.attentionBias() && llama.outputBias());
        ModelConfig qwen = ModelConfig.parse(LLAMA.replace("\"llama\"", "\"qwen2\""), "c");
        assertTrue(qwen.attentionBias());
        assertFalse(qwen.outputBias());
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse(LLAMA.replace("\"llama\"",
                "\"mistral\"").replace("\"rope_theta\"", "\"attention_bias\": true, \"rope_theta\""), "c"))
                .getMessage().contains("'attention_bias'"));
    }

    @Test
    void qwenSlidingWindowAppliesFromMaxWindowLayersWhenEnabled() {
        String qwen = LLAMA.replace("\"llama\"", "\"qwen2\"")
                .replace("\"rope_theta\"", "\"sliding_window\": 512, \"max_window_layers\": 28, \"rope_theta\"");
        ModelConfig off = ModelConfig.parse(qwen, "c");
        assertEquals(0, off.slidingWindow(31));
        ModelConfig on = ModelConfig.parse(qwen.replace("{", "{\"use_sliding_window\": true, "), "c");
        assertEquals(0, on.slidingWindow(27));
        assertEquals(512, on.slidingWindow(28));
        ModelConfig mistral = ModelConfig.parse(LLAMA.replace("\"llama\"", "\"mistral\"")
                .replace("\"rope_theta\"", "\"sliding_window\": 512, \"rope_theta\""), "c");
        assertEquals(512, mistral.slidingWindow(0));
    }

    @Test
    void ropeScalingTypesAndContexts() {
        ModelConfig dynamic = ModelConfig.parse(LLAMA.replace("\"rope_theta\"",
                "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}, \"rope_theta\""), "c");
        assertEquals(dev.cmoe.model.arch.RopeScaling.Type.DYNAMIC, dynamic.ropeScaling().type());
        assertEquals(8192, dynamic.contextLength());
        ModelConfig yarn = ModelConfig.parse(LLAMA.replace("\"rope_theta\"", "\"rope_scaling\": {\"rope_type\": "
                + "\"yarn\", \"factor\": 8.0, \"original_max_position_embeddings\": 1024}, \"rope_theta\""), "c");
        assertEquals(4.0, yarn.ropeScaling().factor(), 1e-12); // transformers: max / original replaces the factor
        assertEquals(0.1 * Math.log(4) + 1, yarn.ropeScaling().attentionFactor(), 1e-12);
        assertEquals(4096, yarn.contextLength());
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse(LLAMA.replace("\"rope_theta\"",
                "\"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 2}, \"rope_theta\""), "c"))
                .getMessage().contains("rope_scaling type 'longrope' is not supported"));
        assertTrue(assertThrows(ModelConfigException.class, () -> ModelConfig.parse(LLAMA.replace("\"rope_theta\"",
                "\"rope_scaling\": {\"rope_type\": \"wobbly\", \"factor\": 2}, \"rope_theta\""), "c"))
                .getMessage().contains("unknown rope_scaling type 'wobbly'"));
    }
}
