package dev.cmoe.carve.cluster;

import java.util.Arrays;

/**
 * Min-heap of the items of one cluster {@code a}, keyed by what moving each to one other cluster
 * {@code b} costs ({@code c[i][b] - c[i][a]}); the cheapest move is the contracted edge a → b.
 *
 * <p>Deletion is lazy: an item that left {@code a} stays in the heap until it reaches the top,
 * where {@link #peek} drops it. A key depends only on (item, a, b), so any entry whose item is
 * in {@code a} right now carries the right key, even one pushed before the item left and came
 * back. Such returns leave duplicates; {@link #compact} removes them and the stale entries, so
 * the heap holds O(m) entries and all k(k−1) heaps together O(n·k).
 */
final class MoveHeap {
    private double[] keys = new double[16];
    private int[] items = new int[16];
    private int size;

    int size() {
        return size;
    }

    void push(double key, int item) {
        if (size == keys.length) {
            keys = Arrays.copyOf(keys, size * 2);
            items = Arrays.copyOf(items, size * 2);
        }
        siftUp(size++, key, item);
    }

    /** The item at the top after dropping stale entries (items no longer in {@code owner}), or −1. */
    int peek(int[] assignment, int owner) {
        while (size > 0 && assignment[items[0]] != owner) {
            removeTop();
        }
        return size > 0 ? items[0] : -1;
    }

    /** Key of the top entry; only meaningful right after {@link #peek} found one. */
    double topKey() {
        return keys[0];
    }

    /**
     * Keeps one entry per item still in {@code owner} and rebuilds the heap. {@code seen} is
     * scratch of one int per item, {@code stamp} a value not yet written into it.
     */
    void compact(int[] assignment, int owner, int[] seen, int stamp) {
        int kept = 0;
        for (int e = 0; e < size; e++) {
            int item = items[e];
            if (assignment[item] == owner && seen[item] != stamp) {
                seen[item] = stamp;
                keys[kept] = keys[e];
                items[kept] = item;
                kept++;
            }
        }
        size = kept;
        for (int e = size / 2 - 1; e >= 0; e--) {
            siftDown(e, keys[e], items[e]);
        }
    }

    private void removeTop() {
        size--;
        if (size > 0) {
            siftDown(0, keys[size], items[size]);
        }
    }

    private void siftUp(int e, double key, int item) {
        while (e > 0) {
            int parent = (e - 1) >>> 1;
            if (keys[parent] <= key) {
                break;
            }
            keys[e] = keys[parent];
            items[e] = items[parent];
            e = parent;
        }
        keys[e] = key;
        items[e] = item;
    }

    private void siftDown(int e, double key, int item) {
        int half = size >>> 1;
        while (e < half) {
            int child = 2 * e + 1;
            if (child + 1 < size && keys[child + 1] < keys[child]) {
                child++;
            }
            if (key <= keys[child]) {
                break;
            }
            keys[e] = keys[child];
            items[e] = items[child];
            e = child;
        }
        keys[e] = key;
        items[e] = item;
    }
}
