package dev.cmoe.experts.cluster;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.NotSerializableException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.junit.jupiter.api.AfterAll;

/**
 * Coverage-guided fuzzing of the cluster wire format: whatever bytes arrive under whatever
 * manifest, decoding either yields a message, which encodes back to exactly the bytes it was read
 * from, or throws {@link NotSerializableException}; nothing else escapes into Artery. The first
 * byte picks the manifest. Regression inputs live in
 * {@code src/test/resources/dev/cmoe/experts/cluster/TensorSerializerFuzzTestInputs/}.
 */
class TensorSerializerFuzzTest {
    private static final ActorTestKit KIT = ActorTestKit.create();
    private static final TensorSerializer SERIALIZER =
            new TensorSerializer((ExtendedActorSystem) Adapter.toClassic(KIT.system()));
    private static final String MANIFESTS = "BOXIQPLRUVZ";

    @AfterAll
    static void stop() {
        KIT.shutdownTestKit();
    }

    @FuzzTest(maxDuration = "5s")
    void decode(FuzzedDataProvider data) {
        String manifest = String.valueOf(MANIFESTS.charAt(data.consumeInt(0, MANIFESTS.length() - 1)));
        byte[] bytes = data.consumeRemainingAsBytes();
        Object message;
        try {
            message = SERIALIZER.fromBinary(bytes, manifest);
        } catch (NotSerializableException expected) {
            return;
        }
        if (!SERIALIZER.manifest(message).equals(manifest)) {
            throw new AssertionError(manifest + " decoded to a " + SERIALIZER.manifest(message));
        }
        // Refs re-encode to their canonical form, so compare only messages without one exactly.
        if ("OXIV".contains(manifest)) {
            byte[] again = SERIALIZER.toBinary(message);
            if (!Arrays.equals(bytes, again)) {
                throw new AssertionError(manifest + " re-encodes to different bytes: " + message);
            }
        }
        ByteBuffer buf = ByteBuffer.allocate(bytes.length + 8).put(bytes).flip();
        try {
            SERIALIZER.fromBinary(buf, manifest);
        } catch (NotSerializableException e) {
            throw new AssertionError("the buffer path refuses what the array path read: " + e.getMessage(), e);
        }
    }
}
