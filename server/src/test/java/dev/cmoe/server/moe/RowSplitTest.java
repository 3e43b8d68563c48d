package dev.cmoe.server.moe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Water-filling one expert's rows over its replicas' devices. */
class RowSplitTest {
    private static final Replica A = new Replica("w1/cpu", null, null);
    private static final Replica B = new Replica("w2/cpu", null, null);
    private static final Replica C = new Replica("w3/cpu", null, null);
    private static final Map<Object, Integer> NONE = new HashMap<>(); // no replica has work of its own

    private static Map<String, Integer> rowsOf(List<RowSplit.Share> shares) {
        Map<String, Integer> out = new HashMap<>();
        shares.forEach(s -> out.merge(s.replica().device(), s.rows(), Integer::sum));
        return out;
    }

    @Test
    void idleDevicesShareAHotExpertEvenly() {
        List<RowSplit.Share> s = RowSplit.split(30, List.of(A, B, C), Map.of(), NONE, 0);
        assertEquals(Map.of("w1/cpu", 10, "w2/cpu", 10, "w3/cpu", 10), rowsOf(s));
    }

    @Test
    void rowsFillTheLeastBusyDevicesUpToACommonLevel() {
        // w1 already has 20 rows of the step, w2 4, w3 0: 24 more rows level w2 and w3 at 14; w1 gets none
        List<RowSplit.Share> s = RowSplit.split(24, List.of(A, B, C), Map.of("w1/cpu", 20, "w2/cpu", 4), NONE, 0);
        assertEquals(Map.of("w2/cpu", 10, "w3/cpu", 14), rowsOf(s));
        assertEquals(24, s.stream().mapToInt(RowSplit.Share::rows).sum());
    }

    @Test
    void fewRowsStayWholeOnTheLeastBusyDevice() {
        List<RowSplit.Share> s = RowSplit.split(5, List.of(A, B), Map.of("w1/cpu", 3), NONE, 0);
        assertEquals(List.of(new RowSplit.Share(B, 5)), s);
        // below twice the minimum part there is nothing to split
        assertEquals(1, RowSplit.split(2 * RowSplit.MIN_PART_ROWS - 1, List.of(A, B), Map.of(), NONE, 0).size());
        // a split never leaves a part below the minimum: 9 rows against loads 0 and 4 would be 6.5/2.5
        List<RowSplit.Share> uneven = RowSplit.split(9, List.of(A, B), Map.of("w2/cpu", 4), NONE, 0);
        assertTrue(uneven.stream().allMatch(x -> x.rows() >= RowSplit.MIN_PART_ROWS) || uneven.size() == 1, "" + uneven);
        assertEquals(9, uneven.stream().mapToInt(RowSplit.Share::rows).sum());
    }

    @Test
    void tiesRotateWithTheStartAndNothingWithoutReplicas() {
        assertEquals(A, RowSplit.split(1, List.of(A, B), Map.of(), NONE, 0).getFirst().replica());
        assertEquals(B, RowSplit.split(1, List.of(A, B), Map.of(), NONE, 1).getFirst().replica());
        assertTrue(RowSplit.split(8, List.of(), Map.of(), NONE, 0).isEmpty());
    }
}
