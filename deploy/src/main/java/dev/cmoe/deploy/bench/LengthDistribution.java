package dev.cmoe.deploy.bench;

import java.util.Locale;
import java.util.random.RandomGenerator;

/**
 * How many tokens a prompt or a completion has, drawn per request: a fixed count ({@code 64}),
 * uniform integers ({@code 16-128}) or a rounded normal ({@code normal:64:16}), never below 1.
 * Serving benchmarks quote their length mix next to every figure, so it is a flag, not a constant.
 */
public sealed interface LengthDistribution {

    /** One length, at least 1. */
    int sample(RandomGenerator random);

    /** The largest length this distribution can produce (for context checks); normal: mean + 4 SD. */
    int max();

    /** A fixed length. */
    record Fixed(int n) implements LengthDistribution {
        public Fixed {
            positive(n, "length");
        }

        @Override
        public int sample(RandomGenerator random) {
            return n;
        }

        @Override
        public int max() {
            return n;
        }

        @Override
        public String toString() {
            return Integer.toString(n);
        }
    }

    /** Uniform integers in [lo, hi]. */
    record Uniform(int lo, int hi) implements LengthDistribution {
        public Uniform {
            positive(lo, "lower bound");
            if (hi < lo) {
                throw new IllegalArgumentException("length range " + lo + "-" + hi + " is empty");
            }
        }

        @Override
        public int sample(RandomGenerator random) {
            return lo + random.nextInt(hi - lo + 1);
        }

        @Override
        public int max() {
            return hi;
        }

        @Override
        public String toString() {
            return lo + "-" + hi;
        }
    }

    /** Normal(mean, sd), rounded, clipped to [1, mean + 4 sd]. */
    record Normal(double mean, double sd) implements LengthDistribution {
        public Normal {
            if (!(mean >= 1) || !(sd >= 0)) {
                throw new IllegalArgumentException("normal length needs mean >= 1 and sd >= 0, got mean " + mean
                        + ", sd " + sd);
            }
        }

        @Override
        public int sample(RandomGenerator random) {
            return (int) Math.max(1, Math.min(max(), Math.round(mean + sd * random.nextGaussian())));
        }

        @Override
        public int max() {
            return (int) Math.ceil(mean + 4 * sd);
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "normal:%s:%s", trim(mean), trim(sd));
        }
    }

    /**
     * Parses {@code N}, {@code A-B} or {@code normal:MEAN:SD}.
     *
     * @throws IllegalArgumentException naming the spec when it is none of these
     */
    static LengthDistribution parse(String spec) {
        String s = spec.strip();
        try {
            if (s.startsWith("normal:")) {
                String[] p = s.split(":");
                if (p.length != 3) {
                    throw new IllegalArgumentException("expected normal:MEAN:SD");
                }
                return new Normal(Double.parseDouble(p[1]), Double.parseDouble(p[2]));
            }
            int dash = s.indexOf('-', 1);
            if (dash > 0) {
                return new Uniform(Integer.parseInt(s.substring(0, dash)), Integer.parseInt(s.substring(dash + 1)));
            }
            return new Fixed(Integer.parseInt(s));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("length distribution '" + spec + "' is not N, A-B or normal:MEAN:SD ("
                    + e.getMessage() + ")", e);
        }
    }

    private static void positive(int n, String what) {
        if (n < 1) {
            throw new IllegalArgumentException(what + " must be >= 1, got " + n);
        }
    }

    private static String trim(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
    }
}
