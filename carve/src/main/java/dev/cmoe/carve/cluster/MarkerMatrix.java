package dev.cmoe.carve.cluster;

import java.util.stream.IntStream;

/** Binary ATopK marker columns packed as bits, and the L1 (Hamming) distances CMoE clusters on. */
public final class MarkerMatrix {
    /** Neurons per parallel task in {@link #l1ToCentroids}: enough work to outweigh the fork. */
    private static final int CHUNK = 512;

    private final int tokens;
    private final int neurons;
    private final int words; // longs per column: ceil(tokens / 64)
    private final long[] bits; // (neurons, words): column of neuron i is bits[i*words .. (i+1)*words)

    /** An all-zero tokens × neurons marker matrix A. */
    public MarkerMatrix(int tokens, int neurons) {
        if (tokens < 1 || neurons < 1) {
            throw new IllegalArgumentException("need tokens ≥ 1 and neurons ≥ 1, got tokens=" + tokens
                    + ", neurons=" + neurons);
        }
        this.tokens = tokens;
        this.neurons = neurons;
        this.words = (tokens + 63) >>> 6;
        if ((long) words * neurons > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("marker matrix too large: " + tokens + " tokens × " + neurons + " neurons");
        }
        this.bits = new long[words * neurons];
    }

    public int tokens() {
        return tokens;
    }

    public int neurons() {
        return neurons;
    }

    /** Marks neuron as one of the K_a largest on token. */
    public void set(int token, int neuron) {
        check(token, neuron);
        bits[neuron * words + (token >>> 6)] |= 1L << token;
    }

    public boolean get(int token, int neuron) {
        check(token, neuron);
        return (bits[neuron * words + (token >>> 6)] & (1L << token)) != 0;
    }

    /** Activation rate μ of a neuron: the fraction of tokens on which it is marked. */
    public double rate(int neuron) {
        checkNeuron(neuron);
        return (double) count(neuron) / tokens;
    }

    /** μ of every neuron. */
    public double[] rates() {
        double[] rates = new double[neurons];
        for (int i = 0; i < neurons; i++) {
            rates[i] = (double) count(i) / tokens;
        }
        return rates;
    }

    /** The 0/1 column of one neuron as floats, e.g. an initial centroid. */
    public float[] column(int neuron) {
        checkNeuron(neuron);
        float[] column = new float[tokens];
        int base = neuron * words;
        for (int w = 0; w < words; w++) {
            for (long word = bits[base + w]; word != 0; word &= word - 1) {
                column[(w << 6) + Long.numberOfTrailingZeros(word)] = 1f;
            }
        }
        return column;
    }

    /** Centroid = the mean marker column of the given neurons. */
    public float[] mean(int[] members) {
        if (members.length == 0) {
            throw new IllegalArgumentException("mean of an empty set of neurons");
        }
        int[] counts = new int[tokens];
        for (int neuron : members) {
            checkNeuron(neuron);
            int base = neuron * words;
            for (int w = 0; w < words; w++) {
                for (long word = bits[base + w]; word != 0; word &= word - 1) {
                    counts[(w << 6) + Long.numberOfTrailingZeros(word)]++;
                }
            }
        }
        float[] mean = new float[tokens];
        for (int t = 0; t < tokens; t++) {
            mean[t] = (float) ((double) counts[t] / members.length);
        }
        return mean;
    }

    /** L1 distance between one neuron's column and a centroid. */
    public double l1(int neuron, float[] centroid) {
        return l1ToCentroids(new int[] {neuron}, new float[][] {centroid})[0];
    }

    /**
     * L1 distances between each listed neuron's column and each centroid (centroids as
     * float[tokens], e.g. cluster means), row-major (neurons.length × centroids.length) — the
     * cost matrix of {@link BalancedAssignment}.
     *
     * <p>For a binary column x, L1(x, c) = Σ_t |x_t − c_t| = Σ_t c_t + Σ_{t: x_t = 1} (1 − 2c_t).
     * Columns are sparse (K_a of ~10⁴ neurons marked per token), so per neuron only its set bits
     * are visited, each adding one contiguous row of a token-major (1 − 2c) table: about
     * tokens·K_a·k additions for the whole matrix instead of tokens·n·k.
     */
    public double[] l1ToCentroids(int[] neurons, float[][] centroids) {
        int k = centroids.length;
        if (k == 0) {
            throw new IllegalArgumentException("need at least one centroid");
        }
        double[] base = new double[k]; // Σ_t c_t per centroid
        double[] flip = new double[tokens * k]; // (tokens, k): 1 − 2c_t, token-major for the inner loop
        for (int j = 0; j < k; j++) {
            float[] c = centroids[j];
            if (c.length != tokens) {
                throw new IllegalArgumentException("centroid " + j + " has length " + c.length + ", expected " + tokens + " tokens");
            }
            double sum = 0;
            for (int t = 0; t < tokens; t++) {
                sum += c[t];
                flip[t * k + j] = 1.0 - 2.0 * c[t];
            }
            base[j] = sum;
        }
        for (int neuron : neurons) {
            checkNeuron(neuron);
        }
        double[] out = new double[neurons.length * k];
        int chunks = (neurons.length + CHUNK - 1) / CHUNK;
        IntStream.range(0, chunks).parallel().forEach(chunk -> {
            int end = Math.min(neurons.length, (chunk + 1) * CHUNK);
            for (int r = chunk * CHUNK; r < end; r++) {
                int row = r * k;
                System.arraycopy(base, 0, out, row, k);
                int start = neurons[r] * words;
                for (int w = 0; w < words; w++) {
                    for (long word = bits[start + w]; word != 0; word &= word - 1) {
                        int t = (w << 6) + Long.numberOfTrailingZeros(word);
                        int f = t * k;
                        for (int j = 0; j < k; j++) {
                            out[row + j] += flip[f + j];
                        }
                    }
                }
            }
        });
        return out;
    }

    private int count(int neuron) {
        int c = 0;
        int base = neuron * words;
        for (int w = 0; w < words; w++) {
            c += Long.bitCount(bits[base + w]);
        }
        return c;
    }

    private void check(int token, int neuron) {
        if (token < 0 || token >= tokens) {
            throw new IndexOutOfBoundsException("token " + token + " not in [0, " + tokens + ")");
        }
        checkNeuron(neuron);
    }

    private void checkNeuron(int neuron) {
        if (neuron < 0 || neuron >= neurons) {
            throw new IndexOutOfBoundsException("neuron " + neuron + " not in [0, " + neurons + ")");
        }
    }
}
