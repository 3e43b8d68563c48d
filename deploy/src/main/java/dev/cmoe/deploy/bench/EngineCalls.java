package dev.cmoe.deploy.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.internal.NDArrayEx;
import dev.cmoe.model.llama.FeedForward;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.Set;

/**
 * Counts the engine calls an FFN forward makes, by running it on an input wrapped in a counting
 * proxy: every call the FFN's code makes on that array, on the arrays computed from it, on their
 * manager and on their engine-internal view ({@code getNDArrayInternal}, through which DJL's
 * activations go) is one call, except metadata that reaches no operator (shape, dtype, manager,
 * names, closing). Calls the engine makes internally (DJL's own helpers on the real arrays) are
 * not counted, so the count is how many times the Java code crosses into the engine. Arrays the
 * manager creates (index and gate vectors) count as one call each but are not followed, so they
 * can sit inside an index the engine reads directly. Float32 only: the bfloat16 kernels hand
 * arrays to a TorchScript module, which needs the engine's own array class.
 */
public final class EngineCalls {
    private static final Set<String> METADATA = Set.of("getShape", "getDataType", "getDevice", "getManager", "getUid",
            "getName", "setName", "getNDArrayInternal", "close", "attach", "detach", "tempAttach", "returnResource",
            "isReleased", "toString", "hashCode", "equals", "size", "isScalar", "isEmpty", "getSparseFormat",
            "isSparse", "hasGradient", "getEngine", "defaultDevice", "getParentManager", "newSubManager", "isOpen",
            "attachInternal", "attachUncappedInternal", "tempAttachInternal", "detachInternal", "cap",
            "getManagedArrays", "debugDump", "getArray");

    private long calls;

    private EngineCalls() {
    }

    /** Engine calls of one {@code ffn.forward(x)}; what it computes is released before returning. */
    public static long of(FeedForward ffn, NDArray x) {
        EngineCalls counter = new EngineCalls();
        try (NDScope scope = new NDScope()) {
            scope.suppressNotUsedWarning();
            ffn.forward(counter.wrap(x, NDArray.class));
        }
        return counter.calls;
    }

    private <T> T wrap(T target, Class<T> type) {
        return type.cast(Proxy.newProxyInstance(EngineCalls.class.getClassLoader(), new Class<?>[] {type},
                new Counting(target)));
    }

    /** The real object behind {@code o} when it is one of this counter's proxies. */
    private static Object unwrap(Object o) {
        if (o != null && Proxy.isProxyClass(o.getClass()) && Proxy.getInvocationHandler(o) instanceof Counting c) {
            return c.target;
        }
        if (o instanceof NDList list) {
            NDList out = new NDList(list.size());
            list.forEach(a -> out.add((NDArray) unwrap(a)));
            return out;
        }
        if (o instanceof NDArray[] arrays) {
            NDArray[] out = new NDArray[arrays.length];
            for (int i = 0; i < arrays.length; i++) {
                out[i] = (NDArray) unwrap(arrays[i]);
            }
            return out;
        }
        return o;
    }

    /** Forwards to the real object, counting operator calls and following their results. */
    private final class Counting implements InvocationHandler {
        private final Object target;

        Counting(Object target) {
            this.target = target;
        }

        @Override
        public Object invoke(Object proxy, Method method, Object[] args) throws Throwable {
            Object[] real = args == null ? null : new Object[args.length];
            for (int i = 0; real != null && i < args.length; i++) {
                real[i] = unwrap(args[i]);
            }
            Object out;
            try {
                out = method.invoke(target, real);
            } catch (InvocationTargetException e) {
                throw e.getCause();
            }
            boolean fromManager = target instanceof NDManager;
            if (!METADATA.contains(method.getName())) {
                calls++;
            }
            if (out instanceof NDArray a && !fromManager) {
                return wrap(a, NDArray.class);
            }
            if (out instanceof NDList list) {
                NDList wrapped = new NDList(list.size());
                list.forEach(a -> wrapped.add(wrap(a, NDArray.class)));
                return wrapped;
            }
            if (out instanceof NDManager m) {
                return wrap(m, NDManager.class);
            }
            if (out instanceof NDArrayEx ex) {
                return wrap(ex, NDArrayEx.class);
            }
            return out;
        }
    }
}
