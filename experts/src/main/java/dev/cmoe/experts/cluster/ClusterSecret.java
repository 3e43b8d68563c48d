package dev.cmoe.experts.cluster;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Base64;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The secret every node of one cluster holds, so that the head gives experts only to devices that
 * prove they hold it: the head's {@code Describe} carries a fresh random challenge, the device
 * answers with an HMAC-SHA256 of that challenge bound to its device id and its node's address.
 * A member that cannot prove it (a stranger that got past, or was let past, the transport) is
 * refused and downed; an answer relayed from another member names the other member's address
 * and fails too. {@link #OPEN} is the cluster without a secret: it proves nothing and accepts
 * everyone (a single trusted host, tests).
 */
public final class ClusterSecret {
    /** Shortest secret accepted: 128 bits of a random key, written as text. */
    public static final int MIN_BYTES = 16;
    /** No secret: devices are not checked. */
    public static final ClusterSecret OPEN = new ClusterSecret(null);
    private static final String HMAC = "HmacSHA256";
    private static final SecureRandom RANDOM = new SecureRandom();

    private final SecretKeySpec key;

    private ClusterSecret(byte[] secret) {
        this.key = secret == null ? null : new SecretKeySpec(secret, HMAC);
    }

    /** The secret in {@code file} (its text, surrounding whitespace stripped), naming what is wrong. */
    public static ClusterSecret read(Path file) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8).strip();
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read the cluster secret file " + file + ": " + e, e);
        }
        return of(text, file.toString());
    }

    /** A secret given as text; {@code source} names it in errors. */
    public static ClusterSecret of(String text, String source) {
        byte[] b = text.strip().getBytes(StandardCharsets.UTF_8);
        if (b.length < MIN_BYTES) {
            throw new IllegalArgumentException("the cluster secret of " + source + " has " + b.length
                    + " bytes; it needs at least " + MIN_BYTES + " (e.g. `openssl rand -base64 32`)");
        }
        return new ClusterSecret(b);
    }

    /** Whether devices are checked at all. */
    public boolean isOpen() {
        return key == null;
    }

    /** A fresh challenge for one {@code Describe}: 32 random bytes, base64. */
    public static String challenge() {
        byte[] b = new byte[32];
        RANDOM.nextBytes(b);
        return Base64.getEncoder().encodeToString(b);
    }

    /** The device's answer to {@code challenge}: empty for an open cluster. */
    public String prove(String challenge, String deviceId, String address) {
        if (key == null) {
            return "";
        }
        try {
            Mac mac = Mac.getInstance(HMAC);
            mac.init(key);
            // length-prefixed fields, so that no two different triples hash the same bytes
            for (String field : new String[] {challenge, deviceId, address}) {
                byte[] b = field.getBytes(StandardCharsets.UTF_8);
                mac.update(new byte[] {(byte) (b.length >>> 24), (byte) (b.length >>> 16), (byte) (b.length >>> 8),
                        (byte) b.length});
                mac.update(b);
            }
            return Base64.getEncoder().encodeToString(mac.doFinal());
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK has no " + HMAC + ": " + e, e);
        }
    }

    /** Whether {@code proof} answers {@code challenge} for that device at that address (always, when open). */
    public boolean accepts(String challenge, String deviceId, String address, String proof) {
        if (key == null) {
            return true;
        }
        byte[] expected = prove(challenge, deviceId, address).getBytes(StandardCharsets.US_ASCII);
        return MessageDigest.isEqual(expected, proof.getBytes(StandardCharsets.UTF_8));
    }

    @Override
    public String toString() {
        return key == null ? "ClusterSecret[open]" : "ClusterSecret[set]"; // never the secret itself
    }
}
