package dev.cmoe.model.tokenizer;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;

/**
 * Trains a GPT-2 style byte-level BPE vocabulary in plain Java, so our models get a tokenizer fitted
 * to their own corpus with no Python tooling and a byte-for-byte reproducible result.
 *
 * <p>Ids: {@code <s>} = {@value SpecialTokens#BOS_ID}, {@code </s>} = {@value SpecialTokens#EOS_ID},
 * then the 256 byte symbols in byte order (ids 2..257), then one id per merge in merge order. The
 * requested vocabulary size counts all of these. Training stops early when no pair occurs at least
 * {@link #MIN_PAIR_COUNT} times.
 *
 * <p>Algorithm: pre-tokens are counted once; each distinct pre-token is a symbol array with a
 * frequency. Pair counts live in a map and a max-heap with lazy deletion; an index from pair to the
 * words containing it limits every merge to the words it touches. Ties go to the pair with the
 * smaller (left id, right id), which makes the result independent of hash iteration order.
 */
public final class BpeTrainer {
    /** Pairs seen fewer times than this are not worth a vocabulary slot. */
    public static final int MIN_PAIR_COUNT = 2;

    private static final int FIRST_BYTE_ID = SpecialTokens.COUNT;

    /** The trained model: token strings by id (specials, bytes, merges) and the merges in rank order. */
    public record Result(List<String> vocab, List<String[]> merges) {
        /** The number of tokens, special tokens included. */
        public int vocabSize() {
            return vocab.size();
        }
    }

    private BpeTrainer() {}

    /** Trains on {@code texts} and writes {@code tokenizer.json} and {@code tokenizer_config.json} to {@code outDir}. */
    public static Result train(List<String> texts, int vocabSize, Path outDir) throws IOException {
        Result r = train(texts, vocabSize);
        TokenizerFiles.write(r, outDir);
        return r;
    }

    /** Trains on {@code texts} up to {@code vocabSize} tokens in total, special tokens included. */
    public static Result train(List<String> texts, int vocabSize) {
        int minimum = FIRST_BYTE_ID + 256;
        if (vocabSize < minimum) {
            throw new IllegalArgumentException("vocabSize " + vocabSize + " < " + minimum + " (2 special tokens + 256 bytes)");
        }
        List<String> vocab = new ArrayList<>(vocabSize);
        vocab.add(SpecialTokens.BOS);
        vocab.add(SpecialTokens.EOS);
        for (int b = 0; b < 256; b++) {
            vocab.add(String.valueOf(ByteLevel.charOf(b)));
        }
        Map<String, Integer> ids = new HashMap<>();
        for (int i = 0; i < vocab.size(); i++) {
            ids.put(vocab.get(i), i);
        }
        return new Merger(countWords(texts), vocab, ids).run(vocabSize);
    }

    /** Distinct pre-tokens in first-seen order (deterministic word indices) with their frequencies. */
    private static Map<String, int[]> countWords(List<String> texts) {
        Map<String, int[]> counts = new LinkedHashMap<>();
        for (String text : texts) {
            for (String piece : ByteLevel.preTokenize(text)) {
                counts.computeIfAbsent(piece, k -> new int[1])[0]++;
            }
        }
        return counts;
    }

    private static long key(int a, int b) {
        return ((long) a << 32) | (b & 0xffffffffL);
    }

    /** Mutable training state; one instance per training run. */
    private static final class Merger {
        private final int[][] words;
        private final int[] freq;
        private final int[] seen;
        private final List<String> vocab;
        private final Map<String, Integer> ids;
        private final List<String[]> merges = new ArrayList<>();
        private final Map<Long, Long> pairCounts = new HashMap<>();
        private final Map<Long, IntList> pairWords = new HashMap<>();
        /** Entries {count, left, right}; stale ones are skipped when popped. */
        private final PriorityQueue<long[]> heap = new PriorityQueue<>((x, y) -> {
            int c = Long.compare(y[0], x[0]);
            if (c != 0) {
                return c;
            }
            c = Long.compare(x[1], y[1]);
            return c != 0 ? c : Long.compare(x[2], y[2]);
        });

        Merger(Map<String, int[]> wordCounts, List<String> vocab, Map<String, Integer> ids) {
            this.vocab = vocab;
            this.ids = ids;
            words = new int[wordCounts.size()][];
            freq = new int[wordCounts.size()];
            seen = new int[wordCounts.size()];
            int w = 0;
            for (Map.Entry<String, int[]> e : wordCounts.entrySet()) {
                String symbols = ByteLevel.encode(e.getKey());
                int[] s = new int[symbols.length()];
                for (int i = 0; i < s.length; i++) {
                    s[i] = FIRST_BYTE_ID + ByteLevel.byteOf(symbols.charAt(i));
                }
                words[w] = s;
                freq[w] = e.getValue()[0];
                for (int i = 0; i + 1 < s.length; i++) {
                    long k = key(s[i], s[i + 1]);
                    pairCounts.merge(k, (long) freq[w], Long::sum);
                    pairWords.computeIfAbsent(k, x -> new IntList()).addUnlessLast(w);
                }
                w++;
            }
            pairCounts.forEach((k, c) -> push(k, c));
        }

        Result run(int vocabSize) {
            int stamp = 0;
            while (vocab.size() < vocabSize && !heap.isEmpty()) {
                long[] top = heap.poll();
                long k = key((int) top[1], (int) top[2]);
                Long current = pairCounts.get(k);
                if (current == null || current != top[0]) {
                    continue; // superseded by a later push for the same pair
                }
                if (current < MIN_PAIR_COUNT) {
                    break;
                }
                int a = (int) top[1];
                int b = (int) top[2];
                String merged = vocab.get(a) + vocab.get(b);
                // Two merge paths can spell the same string; the token then keeps its first id.
                Integer id = ids.get(merged);
                if (id == null) {
                    id = vocab.size();
                    vocab.add(merged);
                    ids.put(merged, id);
                }
                merges.add(new String[] {vocab.get(a), vocab.get(b)});
                apply(k, a, b, id, ++stamp);
            }
            return new Result(List.copyOf(vocab), List.copyOf(merges));
        }

        /** Replaces (a, b) by c in every word that has it and updates pair counts incrementally. */
        private void apply(long k, int a, int b, int c, int stamp) {
            Map<Long, Long> delta = new HashMap<>();
            IntList affected = pairWords.remove(k);
            for (int n = 0; n < affected.size; n++) {
                int w = affected.items[n];
                if (seen[w] == stamp) {
                    continue;
                }
                seen[w] = stamp;
                int[] old = words[w];
                int[] merged = mergeWord(old, a, b, c);
                if (merged == null) {
                    continue; // stale index entry: an earlier merge consumed the pair here
                }
                long f = freq[w];
                for (int i = 0; i + 1 < old.length; i++) {
                    delta.merge(key(old[i], old[i + 1]), -f, Long::sum);
                }
                for (int i = 0; i + 1 < merged.length; i++) {
                    long p = key(merged[i], merged[i + 1]);
                    delta.merge(p, f, Long::sum);
                    if (merged[i] == c || merged[i + 1] == c) {
                        pairWords.computeIfAbsent(p, x -> new IntList()).addUnlessLast(w);
                    }
                }
                words[w] = merged;
            }
            pairCounts.remove(k);
            for (Map.Entry<Long, Long> e : delta.entrySet()) {
                long p = e.getKey();
                if (e.getValue() == 0 || p == k) {
                    continue;
                }
                long count = pairCounts.getOrDefault(p, 0L) + e.getValue();
                if (count > 0) {
                    pairCounts.put(p, count);
                    push(p, count);
                } else {
                    pairCounts.remove(p);
                }
            }
        }

        /** The word with every left-to-right occurrence of (a, b) replaced by c, or null when there is none. */
        private static int[] mergeWord(int[] s, int a, int b, int c) {
            int[] out = null;
            int n = 0;
            for (int i = 0; i < s.length; i++) {
                if (i + 1 < s.length && s[i] == a && s[i + 1] == b) {
                    if (out == null) {
                        out = Arrays.copyOf(s, s.length - 1);
                        n = i;
                    }
                    out[n++] = c;
                    i++;
                } else if (out != null) {
                    out[n++] = s[i];
                }
            }
            return out == null ? null : Arrays.copyOf(out, n);
        }

        private void push(long k, long count) {
            heap.add(new long[] {count, k >>> 32, k & 0xffffffffL});
        }
    }

    /** A growable int array; boxing millions of word indices would dominate training time. */
    private static final class IntList {
        int[] items = new int[4];
        int size;

        void addUnlessLast(int v) {
            if (size > 0 && items[size - 1] == v) {
                return;
            }
            if (size == items.length) {
                items = Arrays.copyOf(items, size * 2);
            }
            items[size++] = v;
        }
    }
}
