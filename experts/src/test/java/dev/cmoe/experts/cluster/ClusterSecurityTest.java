package dev.cmoe.experts.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import dev.cmoe.experts.testing.TestKeyStores;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The join proof binds the secret, the challenge, the device and its address; key material is checked at start. */
class ClusterSecurityTest {
    private static final String ADDRESS = "pekko://cmoe@10.0.0.7:25520";

    @Test
    void onlyTheSameSecretOverTheSameChallengeDeviceAndAddressIsAccepted() {
        ClusterSecret head = ClusterSecret.of("correct horse battery staple", "test");
        ClusterSecret same = ClusterSecret.of("correct horse battery staple\n", "test");
        ClusterSecret other = ClusterSecret.of("another secret of enough bytes", "test");
        String challenge = ClusterSecret.challenge();
        assertNotEquals(challenge, ClusterSecret.challenge(), "challenges are fresh");
        String proof = same.prove(challenge, "w1/cpu", ADDRESS);
        assertTrue(head.accepts(challenge, "w1/cpu", ADDRESS, proof));
        assertFalse(head.accepts(challenge, "w1/cpu", ADDRESS, other.prove(challenge, "w1/cpu", ADDRESS)));
        assertFalse(head.accepts(ClusterSecret.challenge(), "w1/cpu", ADDRESS, proof), "a replayed answer");
        assertFalse(head.accepts(challenge, "w2/cpu", ADDRESS, proof), "another device's answer");
        assertFalse(head.accepts(challenge, "w1/cpu", "pekko://cmoe@10.0.0.8:25520", proof), "a relayed answer");
        assertFalse(head.accepts(challenge, "w1/cpu", ADDRESS, ""), "no answer (an open node)");
        assertEquals("", ClusterSecret.OPEN.prove(challenge, "w1/cpu", ADDRESS));
        assertTrue(ClusterSecret.OPEN.accepts(challenge, "w1/cpu", ADDRESS, ""), "an open head checks no one");
        assertFalse(head.toString().contains("horse"));
    }

    @Test
    void aShortOrMissingSecretIsRefusedNamingTheFile(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("secret");
        Files.writeString(f, "short\n", StandardCharsets.UTF_8);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ClusterSecret.read(f));
        assertTrue(e.getMessage().contains(f.toString()) && e.getMessage().contains("at least 16"), e.getMessage());
        Path missing = dir.resolve("nope");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ClusterSecret.read(missing)).getMessage()
                .contains(missing.toString()));
    }

    @Test
    void keyMaterialIsOpenedAtStartAndBecomesTlsTcpWithMutualAuthentication(@TempDir Path dir) throws Exception {
        TestKeyStores stores = new TestKeyStores(dir);
        Path identity = stores.identity("node");
        Path trust = stores.trusting("trust", identity);
        Path password = stores.passwordFile();
        ClusterTls tls = ClusterTls.fromFiles(identity, password, trust, password);
        assertEquals(TestKeyStores.PASSWORD, tls.keyStorePassword(), "the file's trailing newline is not the password");
        assertFalse(tls.toString().contains(TestKeyStores.PASSWORD));

        Config c = new ClusterSettings("127.0.0.1", 0, List.of("127.0.0.1:25520"), List.of(),
                ClusterSettings.DEFAULT_FRAME_BYTES, tls).config();
        assertEquals("tls-tcp", c.getString("pekko.remote.artery.transport"));
        assertTrue(c.getBoolean("pekko.remote.artery.ssl.config-ssl-engine.require-mutual-authentication"));
        assertEquals(trust.toAbsolutePath().toString(), c.getString("pekko.remote.artery.ssl.config-ssl-engine.trust-store"));
        assertEquals("tcp", new ClusterSettings("127.0.0.1", 0, List.of("127.0.0.1:25520"), List.of(),
                ClusterSettings.DEFAULT_FRAME_BYTES, null).config().getString("pekko.remote.artery.transport"));

        Path wrong = dir.resolve("wrong");
        Files.writeString(wrong, "not-the-password", StandardCharsets.UTF_8);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ClusterTls.fromFiles(identity, wrong, trust, password));
        assertTrue(e.getMessage().contains("cluster key store " + identity), e.getMessage());
        IllegalArgumentException noKey = assertThrows(IllegalArgumentException.class,
                () -> ClusterTls.fromFiles(trust, password, trust, password));
        assertTrue(noKey.getMessage().contains("holds no private key"), noKey.getMessage());
    }
}
