package dev.cmoe.server.http;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.interpret.FatalTemplateErrorsException;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Renders a chat request's messages into the prompt text the model was trained on: the Jinja
 * {@code chat_template} of {@code tokenizer_config.json}, as Hugging Face's
 * {@code apply_chat_template} renders it (trim_blocks and lstrip_blocks on, {@code bos_token},
 * {@code eos_token}, {@code add_generation_prompt}, {@code raise_exception}, {@code strftime_now}),
 * or, for a model that ships none (the project's own), {@link #PLAIN}.
 */
public final class ChatTemplate {
    /**
     * The documented template for models without one: each message on its own line as
     * {@code role: content}, then {@code assistant:} to prompt the reply. The tokenizer adds BOS.
     */
    public static final String PLAIN = """
            {%- for message in messages %}
            {{- message['role'] + ': ' + message['content'] + '\\n' }}
            {%- endfor %}
            {%- if add_generation_prompt %}
            {{- 'assistant:' }}
            {%- endif %}""";

    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(ChatTemplate.class);
    private static final Jinjava JINJA = jinja();

    private final String source;
    private final String bosToken;
    private final String eosToken;
    private final boolean plain;

    private final String normalised;

    private ChatTemplate(String source, String bosToken, String eosToken, boolean plain) {
        this.source = source;
        this.normalised = JinjaWhitespace.normalise(source);
        this.bosToken = bosToken;
        this.eosToken = eosToken;
        this.plain = plain;
    }

    /** The plain template of models without a chat template. */
    public static ChatTemplate plain() {
        return new ChatTemplate(PLAIN, "", "", true);
    }

    /** A given template with its special tokens. */
    public static ChatTemplate of(String template, String bosToken, String eosToken) {
        return new ChatTemplate(template, bosToken == null ? "" : bosToken, eosToken == null ? "" : eosToken, false);
    }

    /**
     * The template of {@code modelDir/tokenizer_config.json}, or {@link #plain()} when the file or
     * its {@code chat_template} is missing. A list of named templates picks "default".
     */
    public static ChatTemplate load(Path modelDir) throws IOException {
        Path file = modelDir.resolve("tokenizer_config.json");
        if (!Files.isRegularFile(file)) {
            return plain();
        }
        JsonObject config;
        try {
            config = JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8)).getAsJsonObject();
        } catch (RuntimeException e) {
            throw new IOException(file + " is not a JSON object: " + e.getMessage(), e);
        }
        JsonElement t = config.get("chat_template");
        String template = null;
        if (t != null && t.isJsonPrimitive()) {
            template = t.getAsString();
        } else if (t != null && t.isJsonArray()) {
            for (JsonElement named : t.getAsJsonArray()) {
                if (named.isJsonObject() && "default".equals(string(named.getAsJsonObject().get("name")))) {
                    template = string(named.getAsJsonObject().get("template"));
                }
            }
        }
        if (template == null || template.isBlank()) {
            return plain();
        }
        return of(template, token(config.get("bos_token")), token(config.get("eos_token")));
    }

    /** True for the built-in plain template: the prompt then needs the tokenizer's BOS. */
    public boolean isPlain() {
        return plain;
    }

    /** The template's source text. */
    public String source() {
        return source;
    }

    /**
     * Renders {@code messages} (each with at least "role" and "content") and, when
     * {@code addGenerationPrompt}, the opening of the assistant's reply.
     *
     * @throws IllegalArgumentException with the template's own message when it rejects the
     *         conversation ({@code raise_exception}) or cannot render it
     */
    public String render(List<Map<String, Object>> messages, boolean addGenerationPrompt) {
        Map<String, Object> bindings = new HashMap<>();
        bindings.put("messages", messages);
        bindings.put("add_generation_prompt", addGenerationPrompt);
        bindings.put("bos_token", bosToken);
        bindings.put("eos_token", eosToken);
        RenderResult result;
        try {
            result = JINJA.renderForResult(normalised, bindings);
        } catch (FatalTemplateErrorsException e) {
            throw new IllegalArgumentException(firstMessage(e.getErrors()), e);
        } catch (TemplateRejection e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        } catch (RuntimeException e) {
            Throwable root = e;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            if (root instanceof TemplateRejection r) {
                throw new IllegalArgumentException(r.getMessage(), e);
            }
            LOG.debug("chat template failed", e);
            throw new IllegalArgumentException("the model's chat template could not render these messages", e);
        }
        for (TemplateError error : result.getErrors()) {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
                throw new IllegalArgumentException(message(error));
            }
        }
        return result.getOutput();
    }

    private static String firstMessage(Iterable<TemplateError> errors) {
        for (TemplateError e : errors) {
            return message(e);
        }
        return "the chat template could not render the messages";
    }

    private static String message(TemplateError error) {
        Throwable t = error.getException();
        while (t != null) {
            if (t instanceof TemplateRejection r) {
                return r.getMessage();
            }
            t = t.getCause() == t ? null : t.getCause();
        }
        LOG.debug("chat template error: {}", error);
        return "the model's chat template could not render these messages: " + error.getMessage();
    }

    private static String string(JsonElement e) {
        return e != null && e.isJsonPrimitive() ? e.getAsString() : null;
    }

    /** A special token given as a string or as an added-token object ({"content": ...}). */
    private static String token(JsonElement e) {
        if (e == null || e.isJsonNull()) {
            return "";
        }
        if (e.isJsonObject()) {
            return string(e.getAsJsonObject().get("content"));
        }
        return e.getAsString();
    }

    private static Jinjava jinja() {
        // Hugging Face renders with trim_blocks and lstrip_blocks; JinjaWhitespace applies them (and
        // the "-" markers jinjava ignores on expressions) to the source, so jinjava's own are off.
        JinjavaConfig config = JinjavaConfig.newBuilder().withTrimBlocks(false).withLstripBlocks(false)
                .withFailOnUnknownTokens(false).withElResolver(resolver()).build();
        Jinjava j = new Jinjava(config);
        j.getGlobalContext().registerFunction(new ELFunctionDefinition("", "raise_exception", ChatTemplate.class,
                "raiseException", String.class));
        j.getGlobalContext().registerFunction(new ELFunctionDefinition("", "strftime_now", ChatTemplate.class,
                "strftimeNow", String.class));
        return j;
    }

    private static jinjava.javax.el.ELResolver resolver() {
        jinjava.javax.el.CompositeELResolver r = new jinjava.javax.el.CompositeELResolver();
        r.add(new PythonStringMethods());
        r.add(com.hubspot.jinjava.el.JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_WRITE);
        return r;
    }

    /** {@code raise_exception(message)}: the template rejects the conversation. */
    public static String raiseException(String message) {
        throw new TemplateRejection(message);
    }

    /** {@code strftime_now(format)}: the local time in a Python strftime format (the common codes). */
    public static String strftimeNow(String format) {
        LocalDateTime now = LocalDateTime.now();
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c != '%' || i + 1 == format.length()) {
                out.append(c);
                continue;
            }
            char code = format.charAt(++i);
            String pattern = switch (code) {
                case 'd' -> "dd";
                case 'b' -> "MMM";
                case 'B' -> "MMMM";
                case 'm' -> "MM";
                case 'Y' -> "yyyy";
                case 'y' -> "yy";
                case 'H' -> "HH";
                case 'M' -> "mm";
                case 'S' -> "ss";
                case 'A' -> "EEEE";
                case 'a' -> "EEE";
                default -> null;
            };
            if (pattern == null) {
                out.append(code == '%' ? "%" : "%" + code);
            } else {
                out.append(DateTimeFormatter.ofPattern(pattern, Locale.ENGLISH).format(now));
            }
        }
        return out.toString();
    }

    /** Thrown by {@code raise_exception}: carries the template's message to the client. */
    static final class TemplateRejection extends RuntimeException {
        TemplateRejection(String message) {
            super(message, null, false, false);
        }
    }
}
