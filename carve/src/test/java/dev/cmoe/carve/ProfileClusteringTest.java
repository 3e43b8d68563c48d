package dev.cmoe.carve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

class ProfileClusteringTest {
    /**
     * 16 neurons: the 4 with the highest rates form the shared expert; the other 12 come in three
     * planted co-activation groups (by index mod 3) that fire on disjoint thirds of the tokens, with
     * noise and with their indices interleaved, so only the profiles tell the groups apart.
     */
    @Test
    void recoversPlantedCoActivationGroups() {
        int inter = 16;
        int tokens = 300;
        Random r = new Random(5);
        float[] profiles = new float[inter * tokens];
        double[] rates = new double[inter];
        for (int i = 0; i < inter; i++) {
            rates[i] = i < 4 ? 1.0 : 0.5 - 0.01 * i;
            for (int t = 0; t < tokens; t++) {
                boolean on = i < 4 || t / 100 == (i % 3);
                profiles[i * tokens + t] = (float) ((on ? 1.0 : 0.05) * (0.5 + r.nextDouble()));
            }
        }
        Clustering.Result c = Clustering.profiles(profiles, tokens, rates, 1, 3, 4, 20);
        assertArrayEquals(new int[] {0, 1, 2, 3}, c.shared());
        assertTrue(c.converged(), "passes " + c.passes());
        int[][] want = {{6, 9, 12, 15}, {4, 7, 10, 13}, {5, 8, 11, 14}};
        for (int[] group : want) {
            boolean found = false;
            for (int[] e : c.experts()) {
                found |= java.util.Arrays.equals(e, group);
            }
            assertTrue(found, "planted group " + java.util.Arrays.toString(group) + " in "
                    + java.util.Arrays.deepToString(c.experts()));
        }
        for (int j = 0; j < 3; j++) {
            int rep = c.representatives()[j];
            assertTrue(java.util.Arrays.binarySearch(c.experts()[j], rep) >= 0, "representative is a member");
        }
    }
}
