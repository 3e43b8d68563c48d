package dev.cmoe.deploy.gguf;

/**
 * The row order llama.cpp's LLaMA graph expects of the q and k projections. Hugging Face's
 * LLaMA rotates the two halves of each head ({@code rotate_half}: dimension {@code i} pairs
 * with {@code i + headDim/2}); llama.cpp's "normal" RoPE rotates adjacent pairs ({@code 2i},
 * {@code 2i+1}). Reordering each head's output rows so that row {@code 2i+j} of the GGUF
 * weight is row {@code j·headDim/2 + i} of the HF one makes the two rotations agree, which is
 * what {@code convert_hf_to_gguf.py}'s {@code permute} does. Families that llama.cpp runs with
 * NeoX RoPE (Qwen2, Qwen3) keep the HF order.
 */
public final class RotaryPermutation {
    private RotaryPermutation() {
    }

    /** The HF row that GGUF row {@code row} of a q or k projection (or its bias) is. */
    public static int sourceRow(int row, int headDim) {
        int head = row / headDim;
        int r = row % headDim;
        return head * headDim + (r % 2) * (headDim / 2) + r / 2;
    }
}
