package dev.cmoe.server.scheduler;

import dev.cmoe.model.llama.KvCache;

/**
 * A test runner that does what {@link #delegate()} does, except where it overrides a method to
 * inject a fault or hold a step: the forwarding written once for all of them.
 */
public interface DelegatingRunner extends ModelRunner {

    /** The runner everything not overridden goes to. */
    ModelRunner delegate();

    @Override
    default KvCache newCache(int maxLength) {
        return delegate().newCache(maxLength);
    }

    @Override
    default long kvBytesPerToken() {
        return delegate().kvBytesPerToken();
    }

    @Override
    default int contextLength() {
        return delegate().contextLength();
    }

    @Override
    default StepOutput run(ScheduledBatch batch) {
        return delegate().run(batch);
    }
}
