package dev.cmoe.carve.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

class MoveHeapTest {

    /** The slow twin of peek: the smallest key among items currently in the owner cluster. */
    static double minLiveKey(double[] key, int[] assignment, int owner) {
        double min = Double.POSITIVE_INFINITY;
        for (int x = 0; x < key.length; x++) {
            if (assignment[x] == owner) {
                min = Math.min(min, key[x]);
            }
        }
        return min;
    }

    @Test
    void peekSkipsItemsThatLeftAndCompactionKeepsTheRest() {
        Random r = new Random(7);
        int n = 200;
        int owner = 0;
        double[] key = new double[n]; // fixed per item, as c[x][b] − c[x][a] is
        int[] assignment = new int[n];
        Arrays.fill(assignment, 1);
        for (int x = 0; x < n; x++) {
            key[x] = r.nextInt(50) - 25;
        }
        MoveHeap heap = new MoveHeap();
        int[] seen = new int[n];
        int stamp = 0;
        for (int step = 0; step < 5000; step++) {
            int x = r.nextInt(n);
            if (assignment[x] == owner) {
                assignment[x] = 1; // leaves: its entry goes stale
            } else {
                assignment[x] = owner; // (re)enters: pushed again, maybe a duplicate
                heap.push(key[x], x);
            }
            if (step % 97 == 0) {
                heap.compact(assignment, owner, seen, ++stamp);
                long live = Arrays.stream(assignment).filter(a -> a == owner).count();
                assertEquals(live, heap.size(), "compaction keeps one entry per live item");
            }
            int top = heap.peek(assignment, owner);
            double expected = minLiveKey(key, assignment, owner);
            if (top < 0) {
                assertEquals(Double.POSITIVE_INFINITY, expected);
            } else {
                assertEquals(owner, assignment[top]);
                assertEquals(expected, heap.topKey(), 0);
                assertEquals(key[top], heap.topKey(), 0);
            }
        }
        assertTrue(heap.size() <= 5000);
    }
}
