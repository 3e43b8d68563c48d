package dev.cmoe.server.http;

import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import io.netty.handler.codec.http.HttpResponseStatus;

/**
 * An error as the OpenAI API reports it, {@code {"error": {"message", "type", "param", "code"}}}
 * with its HTTP status, so the official clients raise their matching exception (400 bad request,
 * 401, 404, 429, 503). {@code grpcCode} is the status the request counts under in the server's
 * metrics, the same vocabulary as the gRPC front end's.
 */
public final class ApiError extends Exception {
    private final HttpResponseStatus status;
    private final String type;
    private final String param;
    private final String code;
    private final String grpcCode;

    private ApiError(HttpResponseStatus status, String type, String param, String code, String message,
                     String grpcCode) {
        super(message, null, false, false);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
        this.grpcCode = grpcCode;
    }

    /** 400: the request breaks a rule; {@code param} names the field (or null). */
    public static ApiError invalid(String param, String message) {
        return new ApiError(HttpResponseStatus.BAD_REQUEST, "invalid_request_error", param, null, message,
                "INVALID_ARGUMENT");
    }

    /** 400 for a feature this server does not offer, naming the field. */
    public static ApiError unsupported(String param, String message) {
        return new ApiError(HttpResponseStatus.BAD_REQUEST, "invalid_request_error", param, "unsupported_parameter",
                message, "INVALID_ARGUMENT");
    }

    public static ApiError unauthorized(String message) {
        return new ApiError(HttpResponseStatus.UNAUTHORIZED, "invalid_request_error", null, "invalid_api_key",
                message, "UNAUTHENTICATED");
    }

    public static ApiError modelNotFound(String model, String served) {
        return new ApiError(HttpResponseStatus.NOT_FOUND, "invalid_request_error", "model", "model_not_found",
                "The model '" + model + "' does not exist; this server serves '" + served + "'", "NOT_FOUND");
    }

    public static ApiError notFound(String message) {
        return new ApiError(HttpResponseStatus.NOT_FOUND, "invalid_request_error", null, "not_found", message,
                "NOT_FOUND");
    }

    public static ApiError methodNotAllowed(String message) {
        return new ApiError(HttpResponseStatus.METHOD_NOT_ALLOWED, "invalid_request_error", null,
                "method_not_allowed", message, "UNIMPLEMENTED");
    }

    /** 413: the body is larger than the server reads. */
    public static ApiError tooLarge(String message) {
        return new ApiError(HttpResponseStatus.REQUEST_ENTITY_TOO_LARGE, "invalid_request_error", null,
                "request_too_large", message, "INVALID_ARGUMENT");
    }

    /** 429: the admission queue is full. */
    public static ApiError queueFull(String message) {
        return new ApiError(HttpResponseStatus.TOO_MANY_REQUESTS, "rate_limit_error", null, "queue_full", message,
                "RESOURCE_EXHAUSTED");
    }

    /** 503: the server is draining, or cannot serve yet (a cluster head without all its experts). */
    public static ApiError unavailable(String message) {
        return new ApiError(HttpResponseStatus.SERVICE_UNAVAILABLE, "server_error", null, "unavailable", message,
                "UNAVAILABLE");
    }

    public static ApiError internal(String message) {
        return new ApiError(HttpResponseStatus.INTERNAL_SERVER_ERROR, "server_error", null, "internal_error",
                message, "INTERNAL");
    }

    public HttpResponseStatus status() {
        return status;
    }

    public String param() {
        return param;
    }

    public String grpcCode() {
        return grpcCode;
    }

    /** The response body. */
    public JsonObject toJson() {
        JsonObject e = new JsonObject();
        e.addProperty("message", getMessage());
        e.addProperty("type", type);
        if (param == null) {
            e.add("param", JsonNull.INSTANCE);
        } else {
            e.addProperty("param", param);
        }
        if (code == null) {
            e.add("code", JsonNull.INSTANCE);
        } else {
            e.addProperty("code", code);
        }
        JsonObject root = new JsonObject();
        root.add("error", e);
        return root;
    }
}
