package dev.cmoe.model.sample;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class SamplerTest {
    static NDManager manager;
    static final int VOCAB = 50;
    static float[] logits;
    static NDArray nd;

    @BeforeAll
    static void setUp() {
        manager = NDManager.newBaseManager();
        Random r = new Random(5);
        logits = new float[VOCAB];
        for (int i = 0; i < VOCAB; i++) {
            logits[i] = (float) (r.nextGaussian() * 2);
        }
        nd = manager.create(logits);
    }

    @AfterAll
    static void tearDown() {
        manager.close();
    }

    static int[] draw(SamplingParams p, int n, int[] history) {
        Sampler s = new Sampler(p);
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = s.sample(nd, history);
        }
        return out;
    }

    static Integer[] idsByLogitDescending() {
        Integer[] ids = new Integer[VOCAB];
        for (int i = 0; i < VOCAB; i++) {
            ids[i] = i;
        }
        Arrays.sort(ids, (a, b) -> Float.compare(logits[b], logits[a]));
        return ids;
    }

    static double[] softmax(double temperature) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            max = Math.max(max, v / temperature);
        }
        double[] p = new double[VOCAB];
        double sum = 0;
        for (int i = 0; i < VOCAB; i++) {
            p[i] = Math.exp(logits[i] / temperature - max);
            sum += p[i];
        }
        for (int i = 0; i < VOCAB; i++) {
            p[i] /= sum;
        }
        return p;
    }

    @Test
    void greedyPicksTheArgmax() {
        int best = idsByLogitDescending()[0];
        assertTrue(Arrays.stream(draw(SamplingParams.greedy(), 5, new int[0])).allMatch(t -> t == best));
    }

    @Test
    void sameSeedSameTokensOtherSeedOtherTokens() {
        int[] a = draw(SamplingParams.random(1.0, 42), 200, new int[0]);
        int[] b = draw(SamplingParams.random(1.0, 42), 200, new int[0]);
        int[] c = draw(SamplingParams.random(1.0, 43), 200, new int[0]);
        assertEquals(Arrays.toString(a), Arrays.toString(b));
        assertNotEquals(Arrays.toString(a), Arrays.toString(c));
    }

    @Test
    void frequenciesFollowTheSoftmax() {
        int n = 4000;
        int[] counts = new int[VOCAB];
        for (int t : draw(SamplingParams.random(1.5, 7), n, new int[0])) {
            counts[t]++;
        }
        double[] p = softmax(1.5);
        for (int i = 0; i < VOCAB; i++) {
            double sd = Math.sqrt(n * p[i] * (1 - p[i]));
            assertTrue(Math.abs(counts[i] - n * p[i]) < 5 * sd + 3,
                    "token " + i + " drawn " + counts[i] + " times, expected " + n * p[i]);
        }
    }

    @Test
    void topKNeverLeavesTheKMostLikely() {
        Integer[] ranked = idsByLogitDescending();
        Set<Integer> allowed = new HashSet<>(Arrays.asList(ranked).subList(0, 5));
        Set<Integer> seen = new HashSet<>();
        for (int t : draw(new SamplingParams(3.0, 5, 1, 0, 1, 1), 1500, new int[0])) {
            assertTrue(allowed.contains(t), "token " + t + " outside the top 5");
            seen.add(t);
        }
        assertEquals(5, seen.size(), "a hot temperature should reach all five");
    }

    @Test
    void topPNeverLeavesTheNucleus() {
        double[] p = softmax(2.0);
        Integer[] ranked = idsByLogitDescending();
        Set<Integer> nucleus = new HashSet<>();
        double mass = 0;
        for (Integer id : ranked) {
            if (mass >= 0.6) {
                break;
            }
            nucleus.add(id);
            mass += p[id];
        }
        assertTrue(nucleus.size() > 1 && nucleus.size() < VOCAB);
        Set<Integer> seen = new HashSet<>();
        for (int t : draw(new SamplingParams(2.0, 0, 0.6, 0, 1, 3), 1500, new int[0])) {
            assertTrue(nucleus.contains(t), "token " + t + " outside the 0.6 nucleus " + nucleus);
            seen.add(t);
        }
        assertEquals(nucleus, seen);
    }

    @Test
    void minPDropsUnlikelyTokens() {
        double[] p = softmax(1.0);
        double top = Arrays.stream(p).max().orElseThrow();
        for (int t : draw(new SamplingParams(1.0, 0, 1, 0.3, 1, 9), 1000, new int[0])) {
            assertTrue(p[t] >= 0.3 * top, "token " + t + " with p=" + p[t] + " below min_p of top " + top);
        }
    }

    @Test
    void repetitionPenaltyDemotesSeenTokens() {
        Integer[] ranked = idsByLogitDescending();
        int best = ranked[0];
        int second = ranked[1];
        assertTrue(logits[best] > 0, "fixture expects a positive top logit");
        // a strong penalty on the best token makes the runner-up the greedy choice
        SamplingParams p = new SamplingParams(0, 0, 1, 0, 1000, 0);
        assertEquals(second, draw(p, 1, new int[] {best, best})[0]);
        assertEquals(best, draw(SamplingParams.greedy(), 1, new int[] {best})[0]);
        // the input logits are left untouched
        assertEquals(logits[best], nd.getFloat(best));
    }

    @Test
    void rejectsImpossibleSettings() {
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(-0.1, 0, 1, 0, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, -1, 1, 0, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, 0, 0, 0, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, 0, 1.5, 0, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, 0, 1, 1, 1, 0));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new SamplingParams(1, 0, 1, 0, 0, 0));
        assertTrue(e.getMessage().contains("repetition_penalty"));
    }

    @Test
    void presenceAndFrequencyPenaltiesCountOnlyTheGeneratedTokens() {
        // token 0 leads token 1 by 0.5, token 2 trails further
        NDArray l = manager.create(new float[] {3.0f, 2.5f, 1.0f, 0.0f});
        // greedy without penalties repeats the top token forever
        Sampler none = new Sampler(SamplingParams.greedy());
        assertArrayEquals(new int[] {0, 0, 0}, new int[] {none.sample(l, new int[] {0}), none.sample(l, new int[] {0}),
            none.sample(l, new int[] {0})});
        // presence 0.6 > the gap: after one pick of 0 the next is 1, then 2 (both penalised alike);
        // the prompt's token 0 in the history is not penalised, so the first pick is still 0
        Sampler presence = new Sampler(new SamplingParams(0, 0, 1, 0, 1, 0, 0.6, 0));
        int[] p = {presence.sample(l, new int[] {0}), presence.sample(l, new int[] {0}), presence.sample(l,
            new int[] {0})};
        assertArrayEquals(new int[] {0, 1, 0}, p, "0 (3.0 -> 2.4), then 1 (2.5 -> 1.9), then 0 again (2.4)");
        // frequency 0.3: 0 stays on top after one pick (2.7 > 2.5), not after two (2.4 < 2.5)
        Sampler frequency = new Sampler(new SamplingParams(0, 0, 1, 0, 1, 0, 0, 0.3));
        int[] f = {frequency.sample(l, new int[0]), frequency.sample(l, new int[0]), frequency.sample(l, new int[0])};
        assertArrayEquals(new int[] {0, 0, 1}, f);
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(0, 0, 1, 0, 1, 0, 2.5, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(0, 0, 1, 0, 1, 0, 0, Double.NaN));
    }
}
