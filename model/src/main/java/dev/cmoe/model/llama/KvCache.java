package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;

/**
 * One sequence's keys and values for every layer, owned by its own NDManager so that ending a
 * sequence frees its memory at once. Capacity grows by doubling up to {@code maxLength}; the
 * scheduler accounts memory with {@link #bytes()}.
 */
public final class KvCache implements AutoCloseable {
    private final NDManager manager;
    private final NDArray[] keys;   // per layer (capacity, kvHeads, headDim)
    private final NDArray[] values; // per layer (capacity, kvHeads, headDim)
    private final int kvHeads;
    private final int headDim;
    private final int maxLength;
    private int capacity;
    private int length;
    private boolean closed;

    KvCache(NDManager parent, int layers, int kvHeads, int headDim, int initialCapacity, int maxLength) {
        if (maxLength <= 0 || initialCapacity <= 0) {
            throw new IllegalArgumentException("KV cache lengths must be positive: initial " + initialCapacity
                    + ", max " + maxLength);
        }
        this.manager = parent.newSubManager();
        this.keys = new NDArray[layers];
        this.values = new NDArray[layers];
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        this.maxLength = maxLength;
        this.capacity = Math.min(initialCapacity, maxLength);
        // a layer's buffers are made when it first appends: a caller that runs one layer over
        // scratch caches (carving calibration) then holds one layer's worth, not the model's
    }

    /** Tokens cached so far: the position of the next token. */
    public int length() {
        return length;
    }

    /** The most tokens this cache will ever hold. */
    public int maxLength() {
        return maxLength;
    }

    /** Bytes of engine memory the cache holds at its capacity once every layer has run (float32 keys and values). */
    public long bytes() {
        return 2L * keys.length * capacity * kvHeads * headDim * Float.BYTES;
    }

    /** Makes room for {@code n} more tokens, growing every layer's buffers if needed. */
    void reserve(int n) {
        ensureOpen();
        int needed = length + n;
        if (needed > maxLength) {
            throw new IllegalStateException("sequence of " + needed + " tokens exceeds its KV cache limit of "
                    + maxLength);
        }
        if (needed <= capacity) {
            return;
        }
        int grown = Math.min(maxLength, Math.max(needed, capacity * 2));
        for (int l = 0; l < keys.length; l++) {
            if (keys[l] != null) {
                keys[l] = grow(keys[l], grown);
                values[l] = grow(values[l], grown);
            }
        }
        capacity = grown;
    }

    /**
     * Writes layer {@code layer}'s keys and values of the {@code n} new tokens after the cached
     * ones and returns views of the whole history including them.
     *
     * @param k (n, kvHeads, headDim)
     * @param v (n, kvHeads, headDim)
     * @return {keys, values}, each (length + n, kvHeads, headDim)
     */
    NDArray[] append(int layer, NDArray k, NDArray v) {
        int n = (int) k.getShape().get(0);
        buffers(layer);
        NDIndex fresh = new NDIndex("{}:{}", length, length + n);
        keys[layer].set(fresh, k);
        values[layer].set(fresh, v);
        NDIndex all = new NDIndex("0:{}", length + n);
        return new NDArray[] {keys[layer].get(all), values[layer].get(all)};
    }

    /**
     * Layer {@code layer}'s whole key and value buffers, each (capacity, kvHeads, headDim), made
     * at first use: a scripted layer writes the new tokens' rows after {@link #length()} itself,
     * as {@link #append} would, and they count once {@link #advance} commits them.
     */
    NDArray[] buffers(int layer) {
        ensureOpen();
        if (keys[layer] == null) {
            keys[layer] = allocate(capacity);
            values[layer] = allocate(capacity);
        }
        return new NDArray[] {keys[layer], values[layer]};
    }

    /** Commits {@code n} tokens written by {@link #append} in every layer. */
    void advance(int n) {
        length += n;
    }

    /** Forgets tokens past {@code newLength}, e.g. to reuse a prompt's cache or roll back a failed step. */
    public void truncate(int newLength) {
        if (newLength < 0 || newLength > length) {
            throw new IllegalArgumentException("cannot truncate a cache of " + length + " tokens to " + newLength);
        }
        length = newLength;
    }

    public boolean isClosed() {
        return closed;
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            manager.close();
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("KV cache used after it was closed");
        }
    }

    private NDArray allocate(int rows) {
        NDArray a = manager.zeros(new Shape(rows, kvHeads, headDim));
        NDScope.unregister(a); // the cache, not the step's scope, owns its buffers
        return a;
    }

    private NDArray grow(NDArray old, int rows) {
        NDArray bigger = allocate(rows);
        if (length > 0) {
            NDIndex used = new NDIndex("0:{}", length);
            bigger.set(used, old.get(used));
        }
        old.close();
        return bigger;
    }
}
