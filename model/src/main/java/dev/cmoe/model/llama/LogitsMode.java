package dev.cmoe.model.llama;

/** Which positions of a step need logits: decoding wants the last token of each sequence, scoring wants all. */
public enum LogitsMode {
    /** (sequences, vocab): the last token of each chunk. */
    LAST,
    /** (tokens, vocab): every token of every chunk, in batch order. */
    ALL
}
