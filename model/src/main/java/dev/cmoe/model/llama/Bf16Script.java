package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.IValue;
import ai.djl.pytorch.jni.IValueUtils;
import ai.djl.pytorch.jni.JniUtils;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

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
        Path file = null;
        try {
            file = Files.createTempFile("cmoe-bf16-", ".pt");
            try (OutputStream out = Files.newOutputStream(file)) {
                writeArchive(out);
            }
            // a manager of its own that is never closed: the module outlives every model
            PtNDManager manager = (PtNDManager) NDManager.newBaseManager();
            return new Bf16Script(JniUtils.loadModule(manager, file, true, new String[0], new String[0], false));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the bfloat16 TorchScript module: " + e, e);
        } finally {
            if (file != null) {
                try {
                    Files.deleteIfExists(file);
                } catch (IOException ignored) {
                    // a temp file left behind is harmless
                }
            }
        }
    }

    /**
     * A TorchScript archive: an uncompressed zip whose {@code data.pkl} pickles one instance of
     * the scripted class (with its {@code training} flag) and whose {@code code/} holds the class.
     */
    static void writeArchive(OutputStream out) throws IOException {
        byte[] training = "training".getBytes(StandardCharsets.US_ASCII);
        byte[] global = ("c__torch__\n" + CLASS + "\n").getBytes(StandardCharsets.US_ASCII);
        java.io.ByteArrayOutputStream pickle = new java.io.ByteArrayOutputStream();
        pickle.write(new byte[] {(byte) 0x80, 2}); // PROTO 2
        pickle.write(global);                        // GLOBAL
        pickle.write(new byte[] {'q', 0, ')', (byte) 0x81, '}', 'X'}); // BINPUT, EMPTY_TUPLE, NEWOBJ, EMPTY_DICT, BINUNICODE
        pickle.write(new byte[] {(byte) training.length, 0, 0, 0});
        pickle.write(training);
        pickle.write(new byte[] {'q', 1, (byte) 0x88, 's', 'b', 'q', 2, '.'}); // NEWTRUE, SETITEM, BUILD, STOP
        try (ZipOutputStream zip = new ZipOutputStream(out)) {
            stored(zip, "cmoe/data.pkl", pickle.toByteArray());
            stored(zip, "cmoe/code/__torch__.py", SOURCE.getBytes(StandardCharsets.UTF_8));
            stored(zip, "cmoe/constants.pkl", new byte[] {(byte) 0x80, 2, ')', '.'});
            stored(zip, "cmoe/version", "3\n".getBytes(StandardCharsets.US_ASCII));
        }
    }

    private static void stored(ZipOutputStream zip, String name, byte[] data) throws IOException {
        ZipEntry e = new ZipEntry(name);
        e.setMethod(ZipEntry.STORED);
        e.setSize(data.length);
        CRC32 crc = new CRC32();
        crc.update(data);
        e.setCrc(crc.getValue());
        zip.putNextEntry(e);
        zip.write(data);
        zip.closeEntry();
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
        PtNDArray[] pt = new PtNDArray[parts.length];
        for (int i = 0; i < parts.length; i++) {
            pt[i] = (PtNDArray) parts[i];
        }
        return run("cat", parts[0].getManager(), IValue.listFrom(pt), IValue.from((long) axis));
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
            try (IValue out = IValueUtils.runMethod(module, method, in)) {
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
