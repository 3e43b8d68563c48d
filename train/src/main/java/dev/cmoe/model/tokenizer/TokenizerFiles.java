package dev.cmoe.model.tokenizer;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a trained BPE model in the Hugging Face {@code tokenizers} format, so the Rust tokenizer
 * inside DJL (and Python's {@code transformers}) can load it.
 *
 * <p>{@code tokenizer.json}: model BPE (vocab + merges as "left right" strings, no unk token,
 * no dropout); pre-tokenizer ByteLevel (add_prefix_space false, use_regex true); decoder ByteLevel;
 * no normalizer; post-processor null, because training code prepends BOS itself and an implicit
 * one would be added twice; {@code <s>} and {@code </s>} as special added tokens.
 */
final class TokenizerFiles {
    static final String TOKENIZER_JSON = TextTokenizer.TOKENIZER_JSON;
    static final String TOKENIZER_CONFIG_JSON = TextTokenizer.TOKENIZER_CONFIG_JSON;

    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().serializeNulls().create();

    private TokenizerFiles() {}

    static void write(BpeTrainer.Result r, Path outDir) throws IOException {
        Files.createDirectories(outDir);
        writeAtomically(outDir.resolve(TOKENIZER_JSON), GSON.toJson(tokenizerJson(r)));
        writeAtomically(outDir.resolve(TOKENIZER_CONFIG_JSON), GSON.toJson(tokenizerConfig()));
    }

    private static Map<String, Object> tokenizerJson(BpeTrainer.Result r) {
        Map<String, Object> root = new LinkedHashMap<>();
        root.put("version", "1.0");
        root.put("truncation", null);
        root.put("padding", null);
        root.put("added_tokens", List.of(
                addedToken(SpecialTokens.BOS_ID, SpecialTokens.BOS), addedToken(SpecialTokens.EOS_ID, SpecialTokens.EOS)));
        root.put("normalizer", null);
        root.put("pre_tokenizer", byteLevel());
        root.put("post_processor", null);
        root.put("decoder", byteLevel());

        Map<String, Integer> vocab = new LinkedHashMap<>();
        for (int i = 0; i < r.vocab().size(); i++) {
            vocab.putIfAbsent(r.vocab().get(i), i);
        }
        List<String> merges = new ArrayList<>(r.merges().size());
        for (String[] m : r.merges()) {
            merges.add(m[0] + " " + m[1]); // byte-level symbols never contain a space, so this is unambiguous
        }
        Map<String, Object> model = new LinkedHashMap<>();
        model.put("type", "BPE");
        model.put("dropout", null);
        model.put("unk_token", null);
        model.put("continuing_subword_prefix", null);
        model.put("end_of_word_suffix", null);
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        model.put("vocab", vocab);
        model.put("merges", merges);
        root.put("model", model);
        return root;
    }

    private static Map<String, Object> addedToken(int id, String content) {
        Map<String, Object> t = new LinkedHashMap<>();
        t.put("id", id);
        t.put("content", content);
        t.put("single_word", false);
        t.put("lstrip", false);
        t.put("rstrip", false);
        t.put("normalized", false);
        t.put("special", true);
        return t;
    }

    private static Map<String, Object> byteLevel() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("type", "ByteLevel");
        m.put("add_prefix_space", false);
        m.put("trim_offsets", true);
        m.put("use_regex", true);
        return m;
    }

    private static Map<String, Object> tokenizerConfig() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("tokenizer_class", "PreTrainedTokenizerFast");
        m.put("bos_token", SpecialTokens.BOS);
        m.put("eos_token", SpecialTokens.EOS);
        m.put("bos_token_id", SpecialTokens.BOS_ID);
        m.put("eos_token_id", SpecialTokens.EOS_ID);
        m.put("add_bos_token", false);
        m.put("add_eos_token", false);
        // transformers would otherwise "clean up" spaces before punctuation and break round trips.
        m.put("clean_up_tokenization_spaces", false);
        return m;
    }

    /** Writes via a sibling temp file and a rename, so readers never see a half-written file. */
    static void writeAtomically(Path target, String content) throws IOException {
        // a plain name, not createTempFile: that one is private (0600) and the rename would keep it so
        Path tmp = target.resolveSibling("." + target.getFileName() + ".tmp-" + ProcessHandle.current().pid());
        try {
            Files.writeString(tmp, content + "\n", StandardCharsets.UTF_8);
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
        } finally {
            Files.deleteIfExists(tmp);
        }
    }
}
