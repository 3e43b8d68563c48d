package dev.cmoe.model.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.cmoe.model.config.ModelConfig;
import dev.cmoe.model.llama.LlamaModel;
import dev.cmoe.model.sample.SamplingParams;
import dev.cmoe.model.testing.RandomModel;
import dev.cmoe.model.testing.ReferenceLlama;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

class GeneratorTest {

    static int argmax(double[] v) {
        int best = 0;
        for (int i = 1; i < v.length; i++) {
            if (v[i] > v[best]) {
                best = i;
            }
        }
        return best;
    }

    @Test
    void greedyGenerationFollowsTheReferenceArgmax() {
        ModelConfig config = RandomModel.llamaConfig();
        RandomModel weights = RandomModel.of(config, 21);
        ReferenceLlama ref = new ReferenceLlama(weights);
        int[] seq = {5, 17, 42, 8};
        int[] expected = new int[10];
        for (int i = 0; i < expected.length; i++) {
            double[][] logits = ref.logits(seq);
            expected[i] = argmax(logits[seq.length - 1]);
            seq = Arrays.copyOf(seq, seq.length + 1);
            seq[seq.length - 1] = expected[i];
        }
        List<Integer> streamed = new ArrayList<>();
        try (LlamaModel model = LlamaModel.dense(config, weights)) {
            Generator.Result r = Generator.generate(model, new int[] {5, 17, 42, 8}, 10, SamplingParams.greedy(),
                    Set.of(), streamed::add);
            assertArrayEquals(expected, r.tokens());
            assertEquals(Generator.FinishReason.LENGTH, r.reason());
            assertEquals(Arrays.stream(expected).boxed().toList(), streamed);
        }
    }

    @Test
    void stopsAtAStopTokenAndReportsIt() {
        ModelConfig config = RandomModel.llamaConfig();
        try (LlamaModel model = LlamaModel.dense(config, RandomModel.of(config, 21))) {
            int[] free = Generator.generate(model, new int[] {5, 17}, 6, SamplingParams.greedy(), Set.of(), t -> { })
                    .tokens();
            Generator.Result r = Generator.generate(model, new int[] {5, 17}, 6, SamplingParams.greedy(),
                    Set.of(free[2]), t -> { });
            int firstStop = 0;
            while (free[firstStop] != free[2]) {
                firstStop++;
            }
            assertEquals(Generator.FinishReason.EOS_TOKEN, r.reason());
            assertArrayEquals(Arrays.copyOf(free, firstStop + 1), r.tokens());
        }
    }

    @Test
    void sameSeedSameText() {
        ModelConfig config = RandomModel.qwen2Config();
        try (LlamaModel model = LlamaModel.dense(config, RandomModel.of(config, 2))) {
            SamplingParams p = new SamplingParams(1.2, 20, 0.95, 0.01, 1.1, 99);
            int[] a = Generator.generate(model, new int[] {1, 2, 3}, 12, p, Set.of(), t -> { }).tokens();
            int[] b = Generator.generate(model, new int[] {1, 2, 3}, 12, p, Set.of(), t -> { }).tokens();
            assertArrayEquals(a, b);
        }
    }
}
