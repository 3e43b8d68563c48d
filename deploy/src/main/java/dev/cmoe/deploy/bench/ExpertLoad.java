package dev.cmoe.deploy.bench;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Tokens routed to each expert (and each device) between two scrapes of the server's
 * {@code cmoe_expert_tokens_total{layer, expert[, device]}} counters, with the balance figure
 * serving systems quote: max / mean tokens per expert of a layer (1 = perfectly even). An expert
 * with replicas on several devices counts once per expert and once per device it ran on.
 *
 * @param perLayer layer -> tokens per routed expert (index = expert id)
 * @param perDevice device -> tokens its experts served (one entry "all" when the server names none)
 * @param perLayerDevice layer -> device -> tokens, from a cluster head's per-layer device counter; empty without one
 */
public record ExpertLoad(Map<Integer, long[]> perLayer, Map<String, Long> perDevice,
                         Map<Integer, Map<String, Long>> perLayerDevice) {
    public static final String METRIC = "cmoe_expert_tokens_total";
    /** A cluster head's per-device counter; when present it is the device figure (it knows the replica that ran). */
    public static final String DEVICE_METRIC = "cmoe_device_tokens_total";
    /** Label names a server may use for where an expert ran, in order of preference. */
    private static final String[] DEVICE_LABELS = {"device", "worker", "node"};

    /** What happened between scrapes {@code from} and {@code to} (from may be null: since the start). */
    public static ExpertLoad between(MetricsScraper.Scrape from, MetricsScraper.Scrape to) {
        Map<Integer, Map<Integer, Double>> layers = new TreeMap<>();
        Map<String, Double> devices = new TreeMap<>();
        accumulate(to, 1, layers, devices);
        if (from != null) {
            accumulate(from, -1, layers, devices);
        }
        Map<Integer, long[]> perLayer = new TreeMap<>();
        layers.forEach((layer, experts) -> {
            int n = experts.keySet().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1;
            long[] tokens = new long[n];
            experts.forEach((j, v) -> tokens[j] = Math.max(0, Math.round(v)));
            perLayer.put(layer, tokens);
        });
        Map<String, Double> headDevices = new TreeMap<>();
        Map<Integer, Map<String, Double>> headLayers = new TreeMap<>();
        accumulateDevices(to, 1, headDevices, headLayers);
        if (from != null) {
            accumulateDevices(from, -1, headDevices, headLayers);
        }
        if (!headDevices.isEmpty()) {
            devices = headDevices;
        }
        Map<String, Long> perDevice = new TreeMap<>();
        devices.forEach((d, v) -> perDevice.put(d, Math.max(0, Math.round(v))));
        Map<Integer, Map<String, Long>> perLayerDevice = new TreeMap<>();
        headLayers.forEach((layer, byDevice) -> {
            Map<String, Long> counts = new TreeMap<>();
            perDevice.keySet().forEach(d -> counts.put(d, Math.max(0, Math.round(byDevice.getOrDefault(d, 0.0)))));
            perLayerDevice.put(layer, counts); // every device, so one that served none of the layer counts as 0
        });
        return new ExpertLoad(perLayer, perDevice, perLayerDevice);
    }

    private static void accumulate(MetricsScraper.Scrape s, int sign, Map<Integer, Map<Integer, Double>> layers,
                                   Map<String, Double> devices) {
        for (PrometheusText.Sample x : s.samples()) {
            if (!x.name().equals(METRIC) || x.label("layer") == null || x.label("expert") == null) {
                continue;
            }
            int layer = Integer.parseInt(x.label("layer"));
            int expert = Integer.parseInt(x.label("expert"));
            layers.computeIfAbsent(layer, k -> new TreeMap<>()).merge(expert, sign * x.value(), Double::sum);
            devices.merge(device(x), sign * x.value(), Double::sum);
        }
    }

    private static void accumulateDevices(MetricsScraper.Scrape s, int sign, Map<String, Double> devices,
                                          Map<Integer, Map<String, Double>> layers) {
        for (PrometheusText.Sample x : s.samples()) {
            if (x.name().equals(DEVICE_METRIC) && x.label("device") != null) {
                devices.merge(x.label("device"), sign * x.value(), Double::sum);
                if (x.label("layer") != null) {
                    layers.computeIfAbsent(Integer.parseInt(x.label("layer")), k -> new TreeMap<>())
                            .merge(x.label("device"), sign * x.value(), Double::sum);
                }
            }
        }
    }

    private static String device(PrometheusText.Sample x) {
        for (String key : DEVICE_LABELS) {
            if (x.label(key) != null) {
                return x.label(key);
            }
        }
        return "all";
    }

    /** Whether the server reported any routed token in this window. */
    public boolean isEmpty() {
        return perLayer.values().stream().allMatch(t -> java.util.Arrays.stream(t).sum() == 0);
    }

    /** max / mean tokens per expert of {@code layer}; NaN when it saw no token. */
    public double imbalance(int layer) {
        return maxOverMean(perLayer.get(layer));
    }

    /** The largest per-layer imbalance. */
    public double worstImbalance() {
        return perLayer.keySet().stream().mapToDouble(this::imbalance).filter(v -> !Double.isNaN(v)).max()
                .orElse(Double.NaN);
    }

    /** The mean over layers of the per-layer imbalance. */
    public double meanImbalance() {
        return perLayer.keySet().stream().mapToDouble(this::imbalance).filter(v -> !Double.isNaN(v)).average()
                .orElse(Double.NaN);
    }

    /** max / mean tokens per device; 1 with a single device. */
    public double deviceImbalance() {
        return maxOverMean(perDevice.values().stream().mapToLong(Long::longValue).toArray());
    }

    /**
     * The mean over layers of max / mean tokens per device within the layer: what a step waits
     * for, since each layer waits for its busiest device. NaN without per-layer device counts.
     */
    public double layerDeviceImbalance() {
        return perLayerDevice.values().stream()
                .mapToDouble(m -> maxOverMean(m.values().stream().mapToLong(Long::longValue).toArray()))
                .filter(v -> !Double.isNaN(v)).average().orElse(Double.NaN);
    }

    /** max / mean tokens per device of each layer, in layer order (NaN for a layer without tokens). */
    public List<Double> layerDeviceImbalances() {
        return perLayerDevice.values().stream()
                .map(m -> maxOverMean(m.values().stream().mapToLong(Long::longValue).toArray())).toList();
    }

    /** The share of a layer's tokens that went to its busiest {@code k} experts, worst layer. */
    public double topShare(int k) {
        double worst = Double.NaN;
        for (long[] t : perLayer.values()) {
            long total = java.util.Arrays.stream(t).sum();
            if (total == 0) {
                continue;
            }
            long top = java.util.Arrays.stream(t).boxed().sorted((a, b) -> Long.compare(b, a)).limit(k)
                    .mapToLong(Long::longValue).sum();
            double share = (double) top / total;
            worst = Double.isNaN(worst) ? share : Math.max(worst, share);
        }
        return worst;
    }

    static double maxOverMean(long[] v) {
        if (v == null || v.length == 0) {
            return Double.NaN;
        }
        long sum = 0;
        long max = 0;
        for (long x : v) {
            sum += x;
            max = Math.max(max, x);
        }
        return sum == 0 ? Double.NaN : max / ((double) sum / v.length);
    }

    /** The load of every interval between consecutive scrapes that routed at least one token. */
    public static List<Interval> timeline(List<MetricsScraper.Scrape> scrapes) {
        List<Interval> out = new ArrayList<>();
        for (int i = 1; i < scrapes.size(); i++) {
            ExpertLoad load = between(scrapes.get(i - 1), scrapes.get(i));
            if (!load.isEmpty()) {
                out.add(new Interval(scrapes.get(i - 1).t(), scrapes.get(i).t(), load));
            }
        }
        return out;
    }

    /** One interval of the time line, times in nanoseconds since the origin. */
    public record Interval(long from, long to, ExpertLoad load) {
    }
}
