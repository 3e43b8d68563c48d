package dev.cmoe.server.http;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import dev.cmoe.server.request.RequestSpec;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A {@code /v1/completions} or {@code /v1/chat/completions} body read into a {@link RequestSpec}
 * with the OpenAI field names, so the shared rules judge it and their errors name the client's
 * field. Only the shape of the JSON is checked here (types, n = 1, features this server lacks);
 * limits are {@link dev.cmoe.server.request.RequestRules}' business.
 *
 * @param logprobs alternatives per token to report, or -1 for no logprobs
 */
public record OpenAiRequest(Kind kind, String model, boolean stream, boolean includeUsage, RequestSpec spec,
                            int logprobs) {

    /** Which endpoint the body came to; it decides the field names and the response shapes. */
    public enum Kind { COMPLETION, CHAT }

    /**
     * Fields whose only accepted value is their default: anything else asks for what this server
     * cannot do, and a silent ignore would give the client a different answer than it asked for.
     */
    private static final Set<String> UNSUPPORTED = Set.of("best_of", "echo", "suffix", "logit_bias", "tools",
            "tool_choice", "functions", "function_call", "response_format", "audio", "modalities", "prediction",
            "parallel_tool_calls", "web_search_options");

    /** Reads {@code body}; {@code template} renders chat messages into the prompt. */
    public static OpenAiRequest parse(Kind kind, String body, ChatTemplate template) throws ApiError {
        JsonObject o;
        try {
            JsonElement e = JsonParser.parseString(body);
            if (!e.isJsonObject()) {
                throw ApiError.invalid(null, "the request body must be a JSON object, got " + kindOf(e));
            }
            o = e.getAsJsonObject();
        } catch (JsonParseException e) {
            throw ApiError.invalid(null, "the request body is not valid JSON");
        }
        for (String f : UNSUPPORTED) {
            if (present(o, f) && !isDefault(f, o.get(f))) {
                throw ApiError.unsupported(f, f + " = " + o.get(f) + " is not supported by this server");
            }
        }
        String model = string(o, "model");
        if (model == null) {
            throw ApiError.invalid("model", "model is required");
        }
        Integer n = integer(o, "n");
        if (n != null && n != 1) {
            throw ApiError.unsupported("n", "n = " + n + " is not supported: this server returns one choice per"
                    + " request (n = 1); send " + n + " requests instead");
        }
        boolean stream = Boolean.TRUE.equals(bool(o, "stream"));
        boolean includeUsage = false;
        if (present(o, "stream_options")) {
            if (!stream) {
                throw ApiError.invalid("stream_options", "stream_options is only allowed when stream is true");
            }
            JsonObject so = object(o, "stream_options");
            includeUsage = Boolean.TRUE.equals(bool(so, "include_usage", "stream_options.include_usage"));
        }
        RequestSpec.Names names;
        Integer maxTokens;
        if (kind == Kind.CHAT && present(o, "max_completion_tokens")) {
            maxTokens = integer(o, "max_completion_tokens");
            names = names(kind).withMaxNewTokens("max_completion_tokens");
        } else {
            maxTokens = integer(o, "max_tokens");
            names = names(kind);
        }
        String text = null;
        int[] ids = null;
        boolean addBos = true;
        if (kind == Kind.COMPLETION) {
            JsonElement p = o.get("prompt");
            Object prompt = prompt(p);
            if (prompt instanceof String s) {
                text = s;
            } else {
                ids = (int[]) prompt;
            }
        } else {
            List<Map<String, Object>> messages = messages(o);
            try {
                text = template.render(messages, true);
            } catch (IllegalArgumentException e) {
                throw ApiError.invalid("messages", e.getMessage());
            }
            addBos = template.isPlain(); // a model's own template writes its BOS itself
        }
        int logprobs = -1;
        if (kind == Kind.COMPLETION) {
            Integer lp = integer(o, "logprobs");
            logprobs = lp == null ? -1 : lp;
        } else if (Boolean.TRUE.equals(bool(o, "logprobs"))) {
            Integer top = integer(o, "top_logprobs");
            logprobs = top == null ? 0 : top;
        } else if (present(o, "top_logprobs")) {
            throw ApiError.invalid("top_logprobs", "top_logprobs needs logprobs = true");
        }
        Double temperature = number(o, "temperature");
        Long seed = longValue(o, "seed");
        Integer topK = integer(o, "top_k");
        Double minP = number(o, "min_p");
        Integer minTokens = integer(o, "min_tokens");
        RequestSpec spec = new RequestSpec(null, text, ids, addBos, maxTokens, minTokens == null ? 0 : minTokens,
                temperature == null ? 1.0 : temperature, topK == null ? 0 : topK, number(o, "top_p"),
                minP == null ? 0 : minP, number(o, "repetition_penalty"),
                seed != null ? seed : ThreadLocalRandom.current().nextLong(), orZero(number(o, "presence_penalty")),
                orZero(number(o, "frequency_penalty")), stops(o), List.of(),
                Boolean.TRUE.equals(bool(o, "ignore_eos")), logprobs < 0 ? null : logprobs, names);
        return new OpenAiRequest(kind, model, stream, includeUsage, spec, logprobs);
    }

    private static double orZero(Double d) {
        return d == null ? 0 : d;
    }

    private static RequestSpec.Names names(Kind kind) {
        return kind == Kind.COMPLETION
                ? new RequestSpec.Names("prompt", "prompt", "max_tokens", "logprobs", "stop", "stop")
                : new RequestSpec.Names("messages", "messages", "max_tokens", "top_logprobs", "stop", "stop");
    }

    /** A string, or the token ids of a list of integers; a batch of prompts is refused. */
    private static Object prompt(JsonElement p) throws ApiError {
        if (p == null || p.isJsonNull()) {
            throw ApiError.invalid("prompt", "prompt is required");
        }
        if (p.isJsonPrimitive() && p.getAsJsonPrimitive().isString()) {
            return p.getAsString();
        }
        if (!p.isJsonArray()) {
            throw ApiError.invalid("prompt", "prompt must be a string or an array of token ids, got " + kindOf(p));
        }
        JsonArray a = p.getAsJsonArray();
        if (!a.isEmpty() && (a.get(0).isJsonArray() || (a.get(0).isJsonPrimitive()
                && a.get(0).getAsJsonPrimitive().isString()))) {
            if (a.size() != 1) {
                throw ApiError.unsupported("prompt", "prompt holds " + a.size() + " prompts: this server takes one"
                        + " prompt per request");
            }
            return prompt(a.get(0));
        }
        int[] ids = new int[a.size()];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = integerValue(a.get(i), "prompt[" + i + "]");
        }
        return ids;
    }

    private static List<Map<String, Object>> messages(JsonObject o) throws ApiError {
        JsonElement m = o.get("messages");
        if (m == null || m.isJsonNull()) {
            throw ApiError.invalid("messages", "messages is required");
        }
        if (!m.isJsonArray() || m.getAsJsonArray().isEmpty()) {
            throw ApiError.invalid("messages", "messages must be a non-empty array, got " + kindOf(m));
        }
        List<Map<String, Object>> out = new ArrayList<>();
        JsonArray a = m.getAsJsonArray();
        for (int i = 0; i < a.size(); i++) {
            String field = "messages[" + i + "]";
            if (!a.get(i).isJsonObject()) {
                throw ApiError.invalid(field, field + " must be an object, got " + kindOf(a.get(i)));
            }
            JsonObject msg = a.get(i).getAsJsonObject();
            String role = string(msg, "role", field + ".role");
            if (role == null || !Set.of("system", "developer", "user", "assistant", "tool").contains(role)) {
                throw ApiError.invalid(field + ".role", field + ".role must be system, developer, user, assistant"
                        + " or tool, got " + msg.get("role"));
            }
            Map<String, Object> message = new LinkedHashMap<>();
            // templates know system, not OpenAI's newer name for it
            message.put("role", role.equals("developer") ? "system" : role);
            message.put("content", content(msg.get("content"), field + ".content"));
            out.add(message);
        }
        return out;
    }

    /** A message's text: a string, or the text parts of an array of content parts joined. */
    private static String content(JsonElement c, String field) throws ApiError {
        if (c == null || c.isJsonNull()) {
            return "";
        }
        if (c.isJsonPrimitive() && c.getAsJsonPrimitive().isString()) {
            return c.getAsString();
        }
        if (!c.isJsonArray()) {
            throw ApiError.invalid(field, field + " must be a string or an array of text parts, got " + kindOf(c));
        }
        StringBuilder text = new StringBuilder();
        JsonArray parts = c.getAsJsonArray();
        for (int i = 0; i < parts.size(); i++) {
            String pf = field + "[" + i + "]";
            if (!parts.get(i).isJsonObject() || !"text".equals(string(parts.get(i).getAsJsonObject(), "type",
                    pf + ".type"))) {
                throw ApiError.unsupported(pf, pf + " is not a text part: this server takes text only");
            }
            String t = string(parts.get(i).getAsJsonObject(), "text", pf + ".text");
            text.append(t == null ? "" : t);
        }
        return text.toString();
    }

    private static List<String> stops(JsonObject o) throws ApiError {
        JsonElement s = o.get("stop");
        if (s == null || s.isJsonNull()) {
            return List.of();
        }
        if (s.isJsonPrimitive() && s.getAsJsonPrimitive().isString()) {
            return List.of(s.getAsString());
        }
        if (!s.isJsonArray()) {
            throw ApiError.invalid("stop", "stop must be a string or an array of strings, got " + kindOf(s));
        }
        List<String> out = new ArrayList<>();
        for (int i = 0; i < s.getAsJsonArray().size(); i++) {
            JsonElement e = s.getAsJsonArray().get(i);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
                throw ApiError.invalid("stop", "stop[" + i + "] must be a string, got " + kindOf(e));
            }
            out.add(e.getAsString());
        }
        return out;
    }

    private static boolean present(JsonObject o, String f) {
        return o.has(f) && !o.get(f).isJsonNull();
    }

    private static boolean isDefault(String field, JsonElement v) {
        if (v.isJsonPrimitive()) {
            JsonPrimitive p = v.getAsJsonPrimitive();
            return (p.isBoolean() && !p.getAsBoolean()) || (field.equals("best_of") && p.isNumber()
                    && p.getAsDouble() == 1) || (field.equals("tool_choice") && p.isString()
                    && p.getAsString().equals("none")) || (p.isString() && p.getAsString().isEmpty());
        }
        if (v.isJsonArray()) {
            return v.getAsJsonArray().isEmpty();
        }
        if (v.isJsonObject()) {
            JsonObject obj = v.getAsJsonObject();
            return obj.isEmpty() || (field.equals("response_format") && obj.has("type")
                    && "text".equals(obj.get("type").getAsString()));
        }
        return false;
    }

    private static String string(JsonObject o, String f) throws ApiError {
        return string(o, f, f);
    }

    private static String string(JsonObject o, String f, String name) throws ApiError {
        if (!present(o, f)) {
            return null;
        }
        JsonElement e = o.get(f);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
            throw ApiError.invalid(name, name + " must be a string, got " + kindOf(e));
        }
        return e.getAsString();
    }

    private static Boolean bool(JsonObject o, String f) throws ApiError {
        return bool(o, f, f);
    }

    private static Boolean bool(JsonObject o, String f, String name) throws ApiError {
        if (!present(o, f)) {
            return null;
        }
        JsonElement e = o.get(f);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) {
            throw ApiError.invalid(name, name + " must be true or false, got " + kindOf(e));
        }
        return e.getAsBoolean();
    }

    private static JsonObject object(JsonObject o, String f) throws ApiError {
        JsonElement e = o.get(f);
        if (!e.isJsonObject()) {
            throw ApiError.invalid(f, f + " must be an object, got " + kindOf(e));
        }
        return e.getAsJsonObject();
    }

    private static Double number(JsonObject o, String f) throws ApiError {
        if (!present(o, f)) {
            return null;
        }
        JsonElement e = o.get(f);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
            throw ApiError.invalid(f, f + " must be a number, got " + kindOf(e));
        }
        return e.getAsDouble();
    }

    private static Integer integer(JsonObject o, String f) throws ApiError {
        return present(o, f) ? integerValue(o.get(f), f) : null;
    }

    private static Long longValue(JsonObject o, String f) throws ApiError {
        if (!present(o, f)) {
            return null;
        }
        BigDecimal d = decimal(o.get(f), f);
        try {
            return d.longValueExact();
        } catch (ArithmeticException ex) {
            throw ApiError.invalid(f, f + " must be an integer that fits 64 bits, got " + o.get(f));
        }
    }

    private static int integerValue(JsonElement e, String f) throws ApiError {
        BigDecimal d = decimal(e, f);
        try {
            return d.intValueExact();
        } catch (ArithmeticException ex) {
            throw ApiError.invalid(f, f + " must be an integer, got " + e);
        }
    }

    private static BigDecimal decimal(JsonElement e, String f) throws ApiError {
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
            throw ApiError.invalid(f, f + " must be an integer, got " + kindOf(e));
        }
        return e.getAsBigDecimal().stripTrailingZeros();
    }

    /** How a value reads in an error: short values as they are, long ones by their JSON type. */
    private static String kindOf(JsonElement e) {
        String s = e.toString();
        if (s.length() <= 40) {
            return s;
        }
        return e.isJsonArray() ? "an array" : e.isJsonObject() ? "an object" : "a string";
    }
}
