package dev.cmoe.deploy.bench;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A scenario's conclusion: every check it made with the figure it checked, and PASS only when
 * all of them held. Printed as one line so a CI log or a person reads it at a glance.
 *
 * @param scenario the scenario's name
 * @param checks each check, in the order made
 * @param figures the numbers behind the checks and the ones worth reporting alongside
 */
public record Verdict(String scenario, List<Check> checks, Map<String, Object> figures) {

    /** One condition and whether it held, in words that carry the figure ("rejected 14 ≥ 1"). */
    public record Check(String what, boolean held) {
    }

    public boolean pass() {
        return checks.stream().allMatch(Check::held);
    }

    /** {@code VERDICT saturate PASS: a; b; FAILED c} */
    public String line() {
        StringBuilder b = new StringBuilder("VERDICT ").append(scenario).append(pass() ? " PASS: " : " FAIL: ");
        for (int i = 0; i < checks.size(); i++) {
            Check c = checks.get(i);
            b.append(i > 0 ? "; " : "").append(c.held() ? "" : "FAILED ").append(c.what());
        }
        return b.toString();
    }

    /** Collects checks and figures as a scenario makes them. */
    public static final class Builder {
        private final String scenario;
        private final List<Check> checks = new ArrayList<>();
        private final Map<String, Object> figures = new LinkedHashMap<>();

        public Builder(String scenario) {
            this.scenario = scenario;
        }

        /** Adds a check; {@code format} and {@code args} describe it with its figures. */
        public Builder check(boolean held, String format, Object... args) {
            checks.add(new Check(String.format(Locale.ROOT, format, args), held));
            return this;
        }

        public Builder figure(String name, Object value) {
            figures.put(name, value);
            return this;
        }

        public Verdict build() {
            if (checks.isEmpty()) {
                throw new IllegalStateException("scenario " + scenario + " made no check");
            }
            return new Verdict(scenario, List.copyOf(checks), figures);
        }
    }
}
