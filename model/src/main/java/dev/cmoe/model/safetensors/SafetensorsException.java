package dev.cmoe.model.safetensors;

/**
 * Thrown for every malformed, inconsistent or unreadable safetensors file or checkpoint, so callers
 * can catch one type; the message always names the file and, where there is one, the tensor.
 */
public final class SafetensorsException extends RuntimeException {

  public SafetensorsException(String message) {
    super(message);
  }

  public SafetensorsException(String message, Throwable cause) {
    super(message, cause);
  }
}
