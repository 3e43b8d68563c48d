package dev.cmoe.server.scheduler;

import dev.cmoe.model.llama.KvCache;

/**
 * Runs the real model, except that a KV cache longer than {@code maxTokens} cannot be allocated,
 * as when the engine is out of memory: the scheduler must fail that request alone.
 */
public record KvCacheFailingRunner(ModelRunner delegate, int maxTokens) implements DelegatingRunner {
    @Override
    public KvCache newCache(int maxLength) {
        if (maxLength > maxTokens) {
            throw new IllegalStateException("no memory for a cache of more than " + maxTokens + " tokens");
        }
        return delegate.newCache(maxLength);
    }
}
