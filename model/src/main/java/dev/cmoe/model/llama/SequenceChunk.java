package dev.cmoe.model.llama;

/**
 * One sequence's share of a batched step: {@code tokens} are appended after the tokens already
 * in {@code cache} (a prefill chunk, or a single decode token).
 */
public record SequenceChunk(KvCache cache, int[] tokens) {
    public SequenceChunk {
        if (tokens.length == 0) {
            throw new IllegalArgumentException("a sequence chunk needs at least one token");
        }
    }
}
