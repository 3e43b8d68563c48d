package dev.cmoe.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.IValue;
import ai.djl.pytorch.jni.IValueUtils;
import ai.djl.pytorch.jni.JniUtils;
import java.io.ByteArrayOutputStream;
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
 * Writes TorchScript modules from their source and loads them into the engine, because DJL can
 * run a scripted module but has no Java API to build one: the engine's own compiler reads the
 * archive, so a few lines of TorchScript stand in for kernels DJL cannot name or would spread over
 * many calls.
 */
final class TorchScripts {
    /** Threads that have turned the engine's graph optimisation off; see {@link #run}. */
    private static final ThreadLocal<Boolean> UNOPTIMISED = ThreadLocal.withInitial(() -> false);

    private TorchScripts() {
    }

    /**
     * Runs {@code method} of {@code module} on {@code in} (which stay the caller's to close).
     * The engine's graph executor would profile a method and re-optimise it for every new set
     * of input shapes (a prefill, each decode step's batch, each cache growth), which costs far
     * more than these short straight-line methods could gain; so each thread turns that
     * optimisation off (a per-thread engine setting) before its first call.
     */
    static IValue run(PtSymbolBlock module, String method, IValue... in) {
        if (!UNOPTIMISED.get()) {
            JniUtils.setGraphExecutorOptimize(false);
            UNOPTIMISED.set(true);
        }
        return IValueUtils.runMethod(module, method, in);
    }

    /** {@code arrays} as the engine's own array class, which a script's list arguments need. */
    static PtNDArray[] pt(NDArray... arrays) {
        PtNDArray[] out = new PtNDArray[arrays.length];
        for (int i = 0; i < arrays.length; i++) {
            out[i] = (PtNDArray) arrays[i];
        }
        return out;
    }

    /**
     * Compiles {@code source}, which defines the parameterless class {@code className} in
     * TorchScript's serialized dialect, and loads one instance. The module gets a manager of its
     * own that is never closed: callers keep it for the life of the process.
     */
    static PtSymbolBlock load(String className, String source) {
        Path file = null;
        try {
            file = Files.createTempFile("cmoe-script-", ".pt");
            try (OutputStream out = Files.newOutputStream(file)) {
                writeArchive(out, className, source);
            }
            PtNDManager manager = (PtNDManager) NDManager.newBaseManager();
            return JniUtils.loadModule(manager, file, true, new String[0], new String[0], false);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the TorchScript module " + className + ": " + e, e);
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
    static void writeArchive(OutputStream out, String className, String source) throws IOException {
        byte[] training = "training".getBytes(StandardCharsets.US_ASCII);
        byte[] global = ("c__torch__\n" + className + "\n").getBytes(StandardCharsets.US_ASCII);
        ByteArrayOutputStream pickle = new ByteArrayOutputStream();
        pickle.write(new byte[] {(byte) 0x80, 2}); // PROTO 2
        pickle.write(global);                        // GLOBAL
        pickle.write(new byte[] {'q', 0, ')', (byte) 0x81, '}', 'X'}); // BINPUT, EMPTY_TUPLE, NEWOBJ, EMPTY_DICT, BINUNICODE
        pickle.write(new byte[] {(byte) training.length, 0, 0, 0});
        pickle.write(training);
        pickle.write(new byte[] {'q', 1, (byte) 0x88, 's', 'b', 'q', 2, '.'}); // NEWTRUE, SETITEM, BUILD, STOP
        try (ZipOutputStream zip = new ZipOutputStream(out)) {
            stored(zip, "cmoe/data.pkl", pickle.toByteArray());
            stored(zip, "cmoe/code/__torch__.py", source.getBytes(StandardCharsets.UTF_8));
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
}
