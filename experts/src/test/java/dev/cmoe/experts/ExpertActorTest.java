package dev.cmoe.experts;

import org.awaitility.Awaitility;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import dev.cmoe.model.llama.TensorSource;
import dev.cmoe.model.moe.MoeWeightNames;
import java.nio.FloatBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Expert actors compute the SwiGLU of their rows, report bad input, and reload after a fault. */
@Timeout(60)
class ExpertActorTest {
    private static final int D = 12;  // hidden, not a power of two
    private static final int M = 5;   // expert size
    private static final int EXPERTS = 3;
    private static final ActorTestKit KIT = ActorTestKit.create();

    /** Seeded random weights for layer 1's experts, counting every tensor read. */
    private static final class Weights implements TensorSource {
        final Map<String, float[]> tensors = new HashMap<>();
        final AtomicInteger reads = new AtomicInteger();

        Weights() {
            Random r = new Random(11);
            for (int j = 0; j < EXPERTS; j++) {
                tensors.put(MoeWeightNames.expert(1, j, MoeWeightNames.GATE), random(r, M * D));
                tensors.put(MoeWeightNames.expert(1, j, MoeWeightNames.UP), random(r, M * D));
                tensors.put(MoeWeightNames.expert(1, j, MoeWeightNames.DOWN), random(r, D * M));
            }
        }

        @Override
        public FloatBuffer read(String name, long... shape) {
            reads.incrementAndGet();
            return FloatBuffer.wrap(tensors.get(name));
        }

        /** The slow twin: SiLU(x·gateᵀ) ⊙ (x·upᵀ) · downᵀ in double precision, row by row. */
        float[] reference(int j, float[] x, int n) {
            float[] g = tensors.get(MoeWeightNames.expert(1, j, MoeWeightNames.GATE));
            float[] u = tensors.get(MoeWeightNames.expert(1, j, MoeWeightNames.UP));
            float[] w = tensors.get(MoeWeightNames.expert(1, j, MoeWeightNames.DOWN));
            float[] out = new float[n * D];
            for (int t = 0; t < n; t++) {
                double[] h = new double[M];
                for (int i = 0; i < M; i++) {
                    double a = 0;
                    double b = 0;
                    for (int k = 0; k < D; k++) {
                        a += g[i * D + k] * (double) x[t * D + k];
                        b += u[i * D + k] * (double) x[t * D + k];
                    }
                    h[i] = a / (1 + Math.exp(-a)) * b;
                }
                for (int o = 0; o < D; o++) {
                    double s = 0;
                    for (int i = 0; i < M; i++) {
                        s += w[o * M + i] * h[i];
                    }
                    out[t * D + o] = (float) s;
                }
            }
            return out;
        }
    }

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    private static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    private static Map<ExpertId, ActorRef<ExpertActor.Command>> spawn(Weights w) {
        List<ExpertId> ids = new ArrayList<>();
        for (int j = 0; j < EXPERTS; j++) {
            ids.add(new ExpertId(1, j));
        }
        ActorRef<ExpertWorker.Command> worker = KIT.spawn(ExpertWorker.create("cpu-0", Device.cpu(), D, M, ids, w));
        TestProbe<ExpertWorker.Hosted> probe = KIT.createTestProbe();
        worker.tell(new ExpertWorker.GetHosted(probe.getRef()));
        ExpertWorker.Hosted hosted = probe.receiveMessage(Duration.ofSeconds(10));
        assertEquals("cpu-0", hosted.worker());
        assertEquals(ids, List.copyOf(hosted.experts().keySet()));
        return hosted.experts();
    }

    private static void assertClose(float[] want, float[] got) {
        assertEquals(want.length, got.length);
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], 1e-5 * Math.max(1, Math.abs(want[i])), "value " + i);
        }
    }

    private static ExpertActor.Computed compute(ActorRef<ExpertActor.Command> expert, long step, float[] x, int n) {
        TestProbe<ExpertActor.Reply> probe = KIT.createTestProbe();
        expert.tell(new ExpertActor.Compute(step, x, n, probe.getRef()));
        return assertInstanceOf(ExpertActor.Computed.class, probe.receiveMessage(Duration.ofSeconds(10)));
    }

    @Test
    void computesTheSwigluOfItsRowsForOneAndManyTokens() {
        Weights w = new Weights();
        Map<ExpertId, ActorRef<ExpertActor.Command>> experts = spawn(w);
        Random r = new Random(2);
        for (int n : new int[] {1, 3, 17}) {
            for (int j = 0; j < EXPERTS; j++) {
                float[] x = random(r, n * D);
                ExpertActor.Computed c = compute(experts.get(new ExpertId(1, j)), n, x, n);
                assertEquals(n, c.stepId());
                assertEquals(new ExpertId(1, j), c.expert());
                assertClose(w.reference(j, x, n), c.outputs());
            }
        }
    }

    @Test
    void rowsOfTheWrongWidthAreAFailedReply() {
        Map<ExpertId, ActorRef<ExpertActor.Command>> experts = spawn(new Weights());
        TestProbe<ExpertActor.Reply> probe = KIT.createTestProbe();
        experts.get(new ExpertId(1, 0)).tell(new ExpertActor.Compute(7, new float[D + 1], 1, probe.getRef()));
        ExpertActor.Failed f = assertInstanceOf(ExpertActor.Failed.class, probe.receiveMessage(Duration.ofSeconds(10)));
        assertEquals(7, f.stepId());
        assertTrue(f.reason().contains(String.valueOf(D + 1)), f.reason());
    }

    @Test
    void aFaultRestartsTheExpertWhichReloadsItsWeightsAndAnswersCorrectly() throws Exception {
        Weights w = new Weights();
        Map<ExpertId, ActorRef<ExpertActor.Command>> experts = spawn(w);
        ActorRef<ExpertActor.Command> expert = experts.get(new ExpertId(1, 2));
        float[] x = random(new Random(4), 4 * D);
        assertClose(w.reference(2, x, 4), compute(expert, 1, x, 4).outputs()); // all loaded by now
        int loaded = w.reads.get();
        assertEquals(3 * EXPERTS, loaded, "each expert read its three tensors once");

        expert.tell(new ExpertActor.InjectFault("test"));
        Awaitility.await("the restarted expert reloads its weights").atMost(java.time.Duration.ofSeconds(10))
                .pollInterval(java.time.Duration.ofMillis(10)).until(() -> w.reads.get() >= loaded + 3);
        assertEquals(loaded + 3, w.reads.get(), "the restarted expert reloaded gate, up and down, and only it did");
        // the same ref answers, with the reloaded weights
        assertClose(w.reference(2, x, 4), compute(expert, 2, x, 4).outputs());
    }
}
