package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.IValue;

/**
 * bfloat16 through a TorchScript module, because DJL's PyTorch bindings cannot name the dtype:
 * every native call that takes a dtype (create, zeros, toType) aborts the process on bfloat16.
 * Tensors of that dtype are otherwise ordinary engine tensors that DJL can hold, view, transpose
 * and close, as long as nothing asks DJL for their dtype; so the few operations that must create
 * or consume them run inside this module, which the class writes from its TorchScript source at
 * first use and loads into the engine once per process.
 */
final class Bf16Script {
    /** ScalarType codes of TorchScript's serialized form. */
    private static final int BF16 = 15;
    private static final int F32 = 6;

    private static final String CLASS = "CmoeBf16";

    /** TorchScript in its serialized dialect: dtypes are ScalarType integers. */
    private static final String SOURCE = """
            class CmoeBf16(Module):
              __parameters__ = []
              __buffers__ = []
              training : bool
              def forward(self: __torch__.CmoeBf16,
                x: Tensor) -> Tensor:
                return x
              def narrow(self: __torch__.CmoeBf16,
                x: Tensor) -> Tensor:
                return torch.to(x, BF16, False, True)
              def widen(self: __torch__.CmoeBf16,
                x: Tensor) -> Tensor:
                return torch.to(x, F32, False, True)
              def linear(self: __torch__.CmoeBf16,
                x: Tensor,
                wt: Tensor) -> Tensor:
                return torch.to(torch.matmul(torch.to(x, BF16), wt), F32)
              def rows(self: __torch__.CmoeBf16,
                table: Tensor,
                ids: Tensor) -> Tensor:
                return torch.to(torch.index_select(table, 0, ids), F32)
              def cat(self: __torch__.CmoeBf16,
                xs: List[Tensor],
                dim: int) -> Tensor:
                return torch.cat(xs, dim)
            """.replace("BF16", Integer.toString(BF16)).replace("F32", Integer.toString(F32));

    private static volatile Bf16Script instance;

    private final PtSymbolBlock module;

    private Bf16Script(PtSymbolBlock module) {
        this.module = module;
    }

    /** The process's module, loaded on first use; it lives as long as the engine. */
    static Bf16Script get() {
        Bf16Script s = instance;
        if (s == null) {
            synchronized (Bf16Script.class) {
                s = instance;
                if (s == null) {
                    s = load();
                    instance = s;
                }
            }
        }
        return s;
    }

    private static Bf16Script load() {
        return new Bf16Script(TorchScripts.load(CLASS, SOURCE));
    }

    /** A bfloat16 copy of float32 {@code x}, owned by {@code x}'s manager. */
    NDArray narrow(NDArray x) {
        return run("narrow", x.getManager(), x);
    }

    /** A float32 copy of bfloat16 {@code x}. */
    NDArray widen(NDArray x) {
        return run("widen", x.getManager(), x);
    }

    /** {@code x · wT} for float32 x (…, in) and bfloat16 wT (in, out): computed in bfloat16, returned in float32. */
    NDArray linear(NDArray x, NDArray wT) {
        return run("linear", x.getManager(), x, wT);
    }

    /** Rows {@code ids} (int64, 1-D) of a bfloat16 table, in float32. */
    NDArray rows(NDArray table, NDArray ids) {
        return run("rows", ids.getManager(), table, ids);
    }

    /** {@code parts} (bfloat16, equal but for {@code axis}) joined along {@code axis}, owned by the first part's manager. */
    NDArray cat(NDArray[] parts, int axis) {
        return run("cat", parts[0].getManager(), IValue.listFrom(TorchScripts.pt(parts)), IValue.from((long) axis));
    }

    private NDArray run(String method, NDManager owner, NDArray... args) {
        IValue[] in = new IValue[args.length];
        try {
            for (int i = 0; i < args.length; i++) {
                in[i] = IValue.from((PtNDArray) args[i]);
            }
        } catch (RuntimeException e) {
            for (IValue v : in) {
                if (v != null) {
                    v.close();
                }
            }
            throw e;
        }
        return run(method, owner, in);
    }

    /** Runs {@code method} on {@code in}, which it closes. */
    private NDArray run(String method, NDManager owner, IValue... in) {
        try {
            try (IValue out = TorchScripts.run(module, method, in)) {
                return out.toTensor((PtNDManager) owner);
            }
        } finally {
            for (IValue v : in) {
                if (v != null) {
                    v.close();
                }
            }
        }
    }
}
