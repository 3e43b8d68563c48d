package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.carve.cluster.MarkerMatrix;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.moe.Routing;
import dev.cmoe.model.testing.RandomModel;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Random;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * A hand-built layer whose right carving is known. Tokens belong to one of five "topics"; every
 * token also carries a common direction. Sixteen neurons read the common direction (they fire on
 * every token: the shared expert), and five groups of sixteen each read one topic's direction
 * (they fire on that topic only: the routed experts). Groups are interleaved by neuron index so
 * no expert is a contiguous block.
 */
class KnownGroupsTest {
    static final int D = 64;
    static final int TOPICS = 5;
    static final int M = 16;
    static final int INTER = (TOPICS + 1) * M;
    static final int TOKENS = 200;

    /** Group of neuron i: −1 for the shared group (i % 6 == 0), else its topic. */
    static int group(int i) {
        return i % (TOPICS + 1) - 1;
    }

    /** Direction 0 is common; direction 1 + k belongs to topic k. */
    static DenseFfn ffn(Random r) {
        float[] gate = new float[INTER * D];
        float[] up = new float[INTER * D];
        float[] down = new float[D * INTER];
        for (int i = 0; i < INTER; i++) {
            int dir = group(i) + 1;
            for (int k = 0; k < D; k++) {
                gate[i * D + k] = (float) (0.02 * r.nextGaussian() + (k == dir ? 1 : 0));
                up[i * D + k] = (float) (0.02 * r.nextGaussian() + (k == dir ? 1 : 0));
                down[k * INTER + i] = (float) r.nextGaussian();
            }
        }
        return new DenseFfn(D, INTER, gate, up, down);
    }

    /** Token t has topic t % 5: x = 0.8·common + 0.6·topic + noise. */
    static float[] inputs(Random r) {
        float[] x = new float[TOKENS * D];
        for (int t = 0; t < TOKENS; t++) {
            for (int k = 0; k < D; k++) {
                x[t * D + k] = (float) (0.02 * r.nextGaussian());
            }
            x[t * D] += 0.8f;
            x[t * D + 1 + t % TOPICS] += 0.6f;
        }
        return x;
    }

    static Set<Set<Integer>> asSets(int[][] groups) {
        return Arrays.stream(groups).map(g -> Arrays.stream(g).boxed().collect(Collectors.toSet()))
                .collect(Collectors.toSet());
    }

    @Test
    void sharedNeuronsAndTopicGroupsAreRecoveredAndRouted() {
        Random r = new Random(11);
        DenseFfn ffn = ffn(r);
        float[] x = inputs(r);
        // K_a = 2m: per token the sixteen common neurons and the sixteen of its topic
        MarkerMatrix markers = NeuronScores.markers(x, ffn, 2 * M, done -> { });
        double[] rates = markers.rates();
        for (int i = 0; i < INTER; i++) {
            assertEquals(group(i) < 0 ? 1.0 : 1.0 / TOPICS, rates[i], 1e-12, "μ of neuron " + i);
        }
        int[] sharedGroup = IntStream.range(0, INTER).filter(i -> group(i) < 0).toArray();
        int[][] topicGroups = new int[TOPICS][];
        for (int k = 0; k < TOPICS; k++) {
            int topic = k;
            topicGroups[k] = IntStream.range(0, INTER).filter(i -> group(i) == topic).toArray();
        }
        for (int passes : new int[] {1, Carver.Recipe.MAX_PASSES}) {
            Clustering.Result c = Clustering.carve(markers, rates, 1, TOPICS, M, passes);
            assertArrayEquals(sharedGroup, c.shared());
            assertEquals(asSets(topicGroups), asSets(c.experts()), "passes " + passes);
            for (int j = 0; j < TOPICS; j++) {
                int rep = c.representatives()[j];
                assertTrue(Arrays.stream(c.experts()[j]).anyMatch(i -> i == rep));
            }
            if (passes > 1) {
                assertTrue(c.converged());
                assertEquals(2, c.passes());
            }
            // every analytical router variant sends every token to the expert of its topic (the
            // random router is an ablation and is expected not to)
            for (RouterFit.Kind kind : RouterFit.Kind.values()) {
                if (kind == RouterFit.Kind.RANDOM) {
                    continue;
                }
                RouterFit.Rows rows = switch (kind) {
                    case REPRESENTATIVE -> RouterFit.reference(ffn, c.representatives());
                    case MEAN -> RouterFit.mean(ffn, c.experts(), c.representatives());
                    case FITTED -> RouterFit.fitted(ffn, c.experts(), x);
                    case LSQ -> RouterFit.leastSquares(ffn, c.experts(), c.representatives(), x);
                    case RANDOM -> throw new AssertionError("skipped above");
                };
                assertRoutesByTopic(ffn, c, rows, x, kind + ", passes " + passes);
            }
        }
    }

    private static void assertRoutesByTopic(DenseFfn ffn, Clustering.Result c, RouterFit.Rows rows, float[] x,
                                            String what) {
        TensorMap tensors = new TensorMap();
        LayerTensors.put(tensors, 0, ffn, c, rows);
        MoeConfig moe = new MoeConfig(TOPICS + 1, 1, 1, M, MoeConfig.ANALYTICAL, "cmoe", null);
        try (NDManager m = NDManager.newBaseManager();
             MoeFeedForward layer = MoeFeedForward.load(m, tensors, 0,
                     RandomModel.config("llama", D, INTER, 1, 4, 2, 10, false, null), moe)) {
            Routing routing = layer.route(m.create(x, new Shape(TOKENS, D)));
            for (int t = 0; t < TOKENS; t++) {
                int expert = routing.expert(t, 0);
                assertEquals(t % TOPICS, group(c.experts()[expert][0]), what + ", token " + t);
            }
        }
    }

    @Test
    void sharedGroupGoesByRateNotByIndex() {
        // rates decide the shared expert; ties go to the lower index
        double[] rates = {0.1, 0.5, 0.5, 0.9, 0.2, 0.0};
        assertArrayEquals(new int[] {3, 1, 2, 4, 0, 5}, Clustering.byRateDescending(rates));
        assertEquals(new HashSet<>(Arrays.asList(1, 3)),
                Arrays.stream(Arrays.copyOf(Clustering.byRateDescending(rates), 2)).boxed().collect(Collectors.toSet()));
    }
}
