package dev.cmoe.server.scheduler;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * Runs the real model, except that entries matching {@code fails} fail, as a bad input or a bug
 * would.
 */
public record FailingRunner(ModelRunner delegate, Predicate<ScheduledBatch.Entry> fails) implements DelegatingRunner {
    /** Fails every step of request {@code requestId}. */
    public FailingRunner(ModelRunner delegate, String requestId) {
        this(delegate, e -> e.requestId().equals(requestId));
    }

    @Override
    public StepOutput run(ScheduledBatch batch) {
        List<ScheduledBatch.Entry> rest = batch.entries().stream().filter(fails.negate()).toList();
        Map<String, String> failed = new HashMap<>();
        batch.entries().stream().filter(fails).forEach(e -> failed.put(e.requestId(),
                "injected failure for " + e.requestId()));
        if (rest.isEmpty()) {
            return new StepOutput(Map.of(), failed, 0);
        }
        StepOutput out = delegate.run(new ScheduledBatch(batch.step(), rest));
        failed.putAll(out.failed());
        return new StepOutput(out.sampled(), failed, out.nanos());
    }
}
