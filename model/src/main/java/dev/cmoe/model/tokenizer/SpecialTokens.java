package dev.cmoe.model.tokenizer;

/**
 * The special tokens of tokenizers trained by {@code BpeTrainer} (module train), fixed at the first ids so that
 * model code can rely on them without reading any file.
 */
public final class SpecialTokens {
    /** Beginning of sequence; language-model code prepends it itself (the tokenizer never adds it). */
    public static final String BOS = "<s>";
    /** End of sequence / document separator. */
    public static final String EOS = "</s>";
    /** Id of {@link #BOS}. */
    public static final int BOS_ID = 0;
    /** Id of {@link #EOS}. */
    public static final int EOS_ID = 1;
    /** How many special tokens precede the byte alphabet. */
    public static final int COUNT = 2;

    private SpecialTokens() {}
}
