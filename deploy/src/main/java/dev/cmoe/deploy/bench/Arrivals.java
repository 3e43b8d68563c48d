package dev.cmoe.deploy.bench;

import java.util.random.RandomGenerator;

/**
 * Inter-arrival gaps of an open-loop load. Poisson arrivals have exponential gaps; gamma gaps
 * with shape k = 1/cv² keep the same mean rate but arrive in bursts when cv > 1 (and more
 * evenly when cv < 1), the way real traffic bunches up.
 *
 * @param rate mean requests per second
 * @param cv coefficient of variation of the gaps: 1 = Poisson
 */
public record Arrivals(double rate, double cv) {

    public Arrivals {
        if (!(rate > 0) || Double.isInfinite(rate)) {
            throw new IllegalArgumentException("--rate must be a positive number of requests per second, got " + rate);
        }
        if (!(cv > 0) || Double.isInfinite(cv)) {
            throw new IllegalArgumentException("--burstiness (cv of the gaps) must be > 0, got " + cv);
        }
    }

    public static Arrivals poisson(double rate) {
        return new Arrivals(rate, 1);
    }

    /** The next gap in nanoseconds. */
    public long nextGapNanos(RandomGenerator random) {
        double shape = 1 / (cv * cv);
        double mean = 1 / rate;
        double gap = shape == 1 ? -Math.log(1 - random.nextDouble()) * mean : gamma(shape, random) * mean / shape;
        return Math.max(0, Math.round(gap * 1e9));
    }

    /** Gamma(shape, 1) by Marsaglia and Tsang; shape < 1 through the boost Gamma(shape+1)·U^(1/shape). */
    static double gamma(double shape, RandomGenerator random) {
        if (shape < 1) {
            return gamma(shape + 1, random) * Math.pow(random.nextDouble(), 1 / shape);
        }
        double d = shape - 1.0 / 3;
        double c = 1 / Math.sqrt(9 * d);
        while (true) {
            double x = random.nextGaussian();
            double v = 1 + c * x;
            if (v <= 0) {
                continue;
            }
            v = v * v * v;
            double u = random.nextDouble();
            if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) {
                return d * v;
            }
        }
    }

    public String describe() {
        return cv == 1 ? String.format(java.util.Locale.ROOT, "Poisson arrivals at %.2f req/s", rate)
                : String.format(java.util.Locale.ROOT, "gamma arrivals at %.2f req/s, cv %.2f", rate, cv);
    }
}
