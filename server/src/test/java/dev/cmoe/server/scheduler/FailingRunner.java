package dev.cmoe.server.scheduler;

import dev.cmoe.model.llama.KvCache;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Runs the real model for every request but one, whose part of each step fails, as a bad input or a bug would. */
public record FailingRunner(ModelRunner delegate, String failing) implements ModelRunner {
    @Override
    public KvCache newCache(int maxLength) {
        return delegate.newCache(maxLength);
    }

    @Override
    public long kvBytesPerToken() {
        return delegate.kvBytesPerToken();
    }

    @Override
    public int contextLength() {
        return delegate.contextLength();
    }

    @Override
    public StepOutput run(ScheduledBatch batch) {
        List<ScheduledBatch.Entry> rest = batch.entries().stream().filter(e -> !e.requestId().equals(failing)).toList();
        Map<String, String> failed = new HashMap<>();
        if (rest.size() < batch.entries().size()) {
            failed.put(failing, "injected failure for " + failing);
        }
        if (rest.isEmpty()) {
            return new StepOutput(Map.of(), failed, 0);
        }
        StepOutput out = delegate.run(new ScheduledBatch(batch.step(), rest));
        failed.putAll(out.failed());
        return new StepOutput(out.sampled(), failed, out.nanos());
    }
}
