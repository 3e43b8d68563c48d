package dev.cmoe.model.moe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.config.ModelConfigException;
import dev.cmoe.model.testing.RandomModel;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class MoeConfigTest {
    static final String BLOCK = """
            {"experts": 8, "shared": 2, "active": 2, "expert_size": 12, "router": "analytical",
             "method": "cmoe", "k_act": 10, "calibration": {"samples": 8, "seqlen": 64}}""";

    static ModelConfig withBlock(String block) {
        JsonObject raw = RandomModel.llamaConfig().rawCopy(); // intermediate_size 96 = 8 × 12
        raw.add(MoeConfig.KEY, JsonParser.parseString(block));
        return ModelConfig.parse(raw.toString(), "test");
    }

    @Test
    void denseConfigHasNoBlock() {
        assertEquals(Optional.empty(), MoeConfig.of(RandomModel.llamaConfig()));
    }

    @Test
    void parsesTheBlockAndKeepsTheRestAsDetails() {
        MoeConfig moe = MoeConfig.of(withBlock(BLOCK)).orElseThrow();
        assertEquals(8, moe.experts());
        assertEquals(2, moe.shared());
        assertEquals(2, moe.active());
        assertEquals(12, moe.expertSize());
        assertEquals(6, moe.routed());
        assertEquals(24, moe.sharedSize());
        assertEquals("cmoe", moe.method());
        assertEquals(10, moe.details().get("k_act").getAsInt());
        assertEquals(64, moe.details().getAsJsonObject("calibration").get("seqlen").getAsInt());
        assertEquals(JsonParser.parseString(BLOCK), moe.toJson());
        assertEquals(moe.toJson(), MoeConfig.parse(moe.toJson()).toJson());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', quoteCharacter = '`', value = {
        "\"experts\": 8,||missing required field 'experts'",
        "\"experts\": 8,|\"experts\": \"8\",|field 'experts' must be an integer",
        "\"active\": 2,|\"active\": 2.5,|field 'active' must be an integer",
        "\"active\": 2,|\"active\": 7,|shared + cmoe.active = 2 + 7 exceeds cmoe.experts = 8",
        "\"active\": 2,|\"active\": 0,|cmoe.active must be at least 1",
        "\"shared\": 2,|\"shared\": -1,|cmoe.shared must not be negative",
        "\"router\": \"analytical\",|\"router\": \"learned\",|cmoe.router 'learned' is not supported",
        "\"method\": \"cmoe\",||missing required field 'method'",
        "\"expert_size\": 12,|\"expert_size\": 11,|8 × 11 = 88 does not equal intermediate_size 96"})
    void errorsNameTheField(String from, String to, String message) {
        String block = BLOCK.replace(from, to == null ? "" : to);
        ModelConfigException e = assertThrows(ModelConfigException.class, () -> MoeConfig.of(withBlock(block)));
        assertTrue(e.getMessage().contains(message), e.getMessage());
    }

    @Test
    void perLayerBudgetsAreEachLayersOwnNkAndRoundTrip() {
        String block = BLOCK.replace("\"active\": 2,", "\"active\": 2, \"active_per_layer\": [3, 1],");
        MoeConfig moe = MoeConfig.of(withBlock(block)).orElseThrow();
        assertTrue(moe.hasLayerBudgets());
        assertEquals(java.util.List.of(3, 1), moe.activePerLayer());
        assertEquals(3, moe.active(0));
        assertEquals(1, moe.active(1));
        assertEquals(3, moe.maxActive());
        assertEquals(2, moe.active(), "N_k stays the mean");
        MoeConfig layer1 = moe.forLayer(1);
        assertEquals(1, layer1.active());
        assertTrue(!layer1.hasLayerBudgets());
        assertEquals(moe.details(), layer1.details());
        assertEquals(JsonParser.parseString(block), moe.toJson());
        assertEquals(moe, MoeConfig.parse(moe.toJson()));
        // uniform budgets are written as no budgets at all
        MoeConfig uniform = MoeConfig.of(withBlock(BLOCK)).orElseThrow();
        assertEquals(uniform, uniform.withActivePerLayer(new int[] {2, 2}));
        assertEquals(moe.activePerLayer(), uniform.withActivePerLayer(new int[] {3, 1}).activePerLayer());
        assertEquals(2, uniform.maxActive());
        assertEquals(2, uniform.active(1));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> uniform.withActivePerLayer(new int[] {3, 2}));
        assertTrue(e.getMessage().contains("sums to 5, but cmoe.active × 2 layers = 4"), e.getMessage());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', quoteCharacter = '`', value = {
        "[3, 1, 1]|has 3 entries, the model has 2 layers",
        "[3, 2]|sums to 5, but cmoe.active × 2 layers = 4",
        "[4, 0]|cmoe.active_per_layer[1] = 0 is outside 1..6",
        "[-3, 7]|cmoe.active_per_layer[0] = -3 is outside 1..6",
        "[2.5, 1.5]|field 'active_per_layer[0]' must be an integer",
        "[]|must be a non-empty array of integers",
        "2|must be a non-empty array of integers"})
    void badBudgetsAreRefusedByName(String budgets, String message) {
        String block = BLOCK.replace("\"active\": 2,", "\"active\": 2, \"active_per_layer\": " + budgets + ",");
        ModelConfigException e = assertThrows(ModelConfigException.class, () -> MoeConfig.of(withBlock(block)));
        assertTrue(e.getMessage().contains(message), e.getMessage());
    }

    @Test
    void blockMustBeAnObject() {
        ModelConfigException e = assertThrows(ModelConfigException.class, () -> MoeConfig.of(withBlock("[1]")));
        assertTrue(e.getMessage().contains("'cmoe' must be an object"), e.getMessage());
    }
}
