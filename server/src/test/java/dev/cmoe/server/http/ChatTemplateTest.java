package dev.cmoe.server.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The published chat templates of Llama-3.1, Qwen2.5, Qwen3 and Mistral (in
 * src/test/resources/chat-templates, as their tokenizer_config.json carry them) render a
 * conversation exactly as Hugging Face's apply_chat_template does.
 */
class ChatTemplateTest {
    private static final List<Map<String, Object>> CHAT = List.of(
            Map.of("role", "system", "content", "You are terse."),
            Map.of("role", "user", "content", "Hi"),
            Map.of("role", "assistant", "content", "Hello."),
            Map.of("role", "user", "content", "Name a colour."));

    private static ChatTemplate fixture(String name) throws Exception {
        return ChatTemplate.load(dir(name));
    }

    private static Path dir(String name) throws URISyntaxException {
        return Path.of(ChatTemplateTest.class.getResource("/chat-templates/" + name + "/tokenizer_config.json")
                .toURI()).getParent();
    }

    @Test
    void llama31() throws Exception {
        ChatTemplate t = fixture("llama-3.1");
        assertFalse(t.isPlain());
        assertEquals("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                + "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n", t.render(CHAT, true));
        // without a system message the header still comes, with an empty system text; content is trimmed
        assertEquals("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                + "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
                t.render(List.of(Map.of("role", "user", "content", "  Hi \n")), false));
    }

    @Test
    void qwen25() throws Exception {
        ChatTemplate t = fixture("qwen2.5");
        assertEquals("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
                + "<|im_start|>assistant\n", t.render(CHAT, true));
        assertEquals("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                        + "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
                t.render(List.of(Map.of("role", "user", "content", "Hi")), false));
    }

    @Test
    void qwen3DropsPastReasoningAndKeepsTheLast() throws Exception {
        ChatTemplate t = fixture("qwen3");
        List<Map<String, Object>> chat = List.of(
                Map.of("role", "system", "content", "You are terse."),
                Map.of("role", "user", "content", "Hi"),
                Map.of("role", "assistant", "content", "<think>\nSay hi.\n</think>\n\nHello."),
                Map.of("role", "user", "content", "Name a colour."));
        assertEquals("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
                + "<|im_start|>assistant\n", t.render(chat, true));
        assertEquals("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nR\n</think>\n\nA<|im_end|>\n",
                t.render(List.of(Map.of("role", "user", "content", "Hi"),
                        Map.of("role", "assistant", "content", "<think>\n\nR\n</think>\n\nA")), false));
    }

    @Test
    void mistral7bAlternatesAndRejectsSystem() throws Exception {
        ChatTemplate t = fixture("mistral-7b-v0.2");
        assertEquals("<s>[INST] Hi [/INST]Hello.</s>[INST] Name a colour. [/INST]", t.render(CHAT.subList(1, 4), true));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.render(CHAT, true));
        assertEquals("Conversation roles must alternate user/assistant/user/assistant/...", e.getMessage());
    }

    @Test
    void mistralSmall32() throws Exception {
        ChatTemplate t = fixture("mistral-small-3.2");
        assertEquals("<s>[SYSTEM_PROMPT]You are terse.[/SYSTEM_PROMPT][INST]Hi[/INST]Hello.</s>"
                + "[INST]Name a colour.[/INST]", t.render(CHAT, true));
        String noSystem = t.render(CHAT.subList(1, 2), true);
        assertTrue(noSystem.startsWith("<s>[SYSTEM_PROMPT]You are Mistral Small 3, a Large Language Model (LLM)"
                + " created by Mistral AI, a French startup headquartered in Paris.\nYour knowledge"), noSystem);
        assertTrue(noSystem.endsWith("'Where do you travel from?')[/SYSTEM_PROMPT][INST]Hi[/INST]"), noSystem);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> t.render(List.of(Map.of("role", "tool", "content", "x")), true));
        assertEquals("Only user, system and assistant roles are supported!", e.getMessage());
    }

    @Test
    void modelsWithoutATemplateGetThePlainOne() throws Exception {
        Path shared = Path.of("../../shared/fixtures/hf-archs/llama3.2").toAbsolutePath().normalize();
        Path model = Files.isDirectory(shared) ? shared : Path.of("../models/brown-llama");
        assertTrue(Files.isRegularFile(model.resolve("tokenizer_config.json")), "fixture at " + model);
        ChatTemplate t = ChatTemplate.load(model);
        assertTrue(t.isPlain());
        assertEquals("system: You are terse.\nuser: Hi\nassistant: Hello.\nuser: Name a colour.\nassistant:",
                t.render(CHAT, true));
        assertTrue(ChatTemplate.load(Files.createTempDirectory("no-config")).isPlain());
    }
}
