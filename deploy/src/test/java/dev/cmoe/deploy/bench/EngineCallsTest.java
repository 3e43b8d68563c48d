package dev.cmoe.deploy.bench;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import dev.cmoe.model.LoadSpec;
import dev.cmoe.model.ModelDir;
import dev.cmoe.model.llama.FeedForward;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeConfig;
import dev.cmoe.model.moe.MoeFeedForward;
import dev.cmoe.model.safetensors.Checkpoint;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The engine-call counter against FFNs whose calls are known, and the per-expert yardstick against the grouped layer. */
@Timeout(60)
class EngineCallsTest {

    @Test
    void countsEachCallOfADenseSwiGluAndOfTheMoeLayers() throws Exception {
        try (ModelDir dense = ModelDir.open(BenchFixture.dense(), LoadSpec.full());
             ModelDir carved = ModelDir.open(BenchFixture.carved(), LoadSpec.full());
             Checkpoint ckpt = Checkpoint.open(BenchFixture.carved());
             NDManager m = NDManager.newBaseManager()) {
            int hidden = dense.model().config().hiddenSize();
            NDArray one = m.randomNormal(new Shape(1, hidden));
            NDArray many = m.randomNormal(new Shape(24, hidden));
            // gate and up projections, SiLU (sigmoid and product), the gating product, down
            assertEquals(6, EngineCalls.of(dense.model().feedForward(0), one));
            assertEquals(6, EngineCalls.of(dense.model().feedForward(0), many));
            MoeFeedForward grouped = (MoeFeedForward) carved.model().feedForward(0);
            MoeConfig moe = grouped.config();
            FeedForward perExpert = PerExpertMoe.load(m, TensorSource.of(ckpt), 0, hidden, moe,
                    carved.model().kernels(), grouped);
            assertTrue(moe.shared() > 0 && moe.active() > 1, "the fixture has a shared expert and N_k > 1");
            // router: two products, SiLU (2), product, |.|, softmax, copy; per selected expert a
            // gather (index, take) and a SwiGLU of three projections (6); combine (the in-process
            // one, for a few tokens): concat, the gates' matrix and its product; the shared SwiGLU
            // (6) and the sum
            assertEquals(8 + moe.active() * (2 + 6) + 3 + 6 + 1, EngineCalls.of(perExpert, one));
            long groupedOne = EngineCalls.of(grouped, one);
            // the fixture's experts are tiny, so one token runs all of them batched: router product
            // and copy; index, take, reshape; fused gate/up product, its SwiGLU (split, sigmoid, 2
            // products), down product, reshape; gates matrix and its product; shared (1 + 4 + 1), sum
            assertEquals(2 + 3 + 1 + 4 + 1 + 1 + 2 + 6 + 1, groupedOne);
            long groupedMany = EngineCalls.of(grouped, many);
            assertTrue(groupedOne < EngineCalls.of(perExpert, one), groupedOne + " calls");
            assertTrue(groupedMany < EngineCalls.of(perExpert, many) / 2, groupedMany + " calls");
            try (NDScope scope = new NDScope()) {
                scope.suppressNotUsedWarning();
                float[] want = perExpert.forward(many).toFloatArray();
                float[] got = grouped.forward(many).toFloatArray();
                assertEquals(want.length, got.length);
                for (int i = 0; i < want.length; i++) {
                    assertEquals(want[i], got[i], 1e-4f * Math.max(1, Math.abs(want[i])), "value " + i);
                }
            }
            perExpert.close();
        }
    }
}
