package dev.cmoe.deploy.cli;

import dev.cmoe.deploy.placement.DeviceList;
import dev.cmoe.deploy.placement.LoadSources;
import dev.cmoe.deploy.placement.RoundRobin;
import dev.cmoe.experts.placement.Bytes;
import dev.cmoe.experts.placement.ExpertLoads;
import dev.cmoe.experts.placement.ExpertMemory;
import dev.cmoe.experts.placement.PlacementPlan;
import dev.cmoe.experts.placement.PlacementStats;
import dev.cmoe.experts.placement.Planner;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code cmoe plan}: places a carved model's routed experts on devices and writes the plan file. */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = {"Place a carved model's routed experts on devices from their measured loads and the devices'"
                + " memory (EPLB: replicate the hottest experts into spare slots, then balance each layer's device"
                + " load). Writes a plan file for `cmoe serve --plan` that an operator may edit, and prints the"
                + " expected load per device against round-robin placement."})
public final class PlanCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Carved model directory (sizes the experts).")
    Path model;

    @Option(names = "--devices", required = true, paramLabel = "LIST",
            description = "Comma-separated WORKER/DEVICE ids, e.g. w1/gpu:0,w1/gpu:1,w2/cpu; append =SIZE to give"
                    + " one device its own memory budget (w1/gpu:0=20GiB).")
    String devices;

    @Option(names = "--memory-per-device", defaultValue = "0", paramLabel = "BYTES",
            description = "Memory each device may spend on expert weights (1073741824, 512MiB, 16G); 0 = not limited"
                    + " (default).")
    String memoryPerDevice;

    @ArgGroup(exclusive = true)
    Slots slots;

    /** The two ways to ask for replicas; at most one. */
    static final class Slots {
        @Option(names = "--spare-slots", paramLabel = "N",
                description = "Replicas beyond one per expert, given to the experts with the highest load per replica"
                        + " (default: 0).")
        Integer spare;

        @Option(names = "--slots-per-device", paramLabel = "N",
                description = "Expert replicas each device holds: N × devices slots in all, the rest of them after"
                        + " one per expert become spare replicas.")
        Integer perDevice;
    }

    @Option(names = "--loads", defaultValue = LoadSources.CARVE_REPORT, paramLabel = "SOURCE",
            description = "Expert loads: carve-report (MODEL/carve_report.json, default), uniform, a saved carve report"
                    + " or /metrics scrape, or a live server's http://HOST:PORT/metrics.")
    String loads;

    @Option(names = "--out", required = true, description = "Plan file to write (atomically).")
    Path out;

    @Override
    public Integer call() throws Exception {
        List<PlacementPlan.Device> deviceList = DeviceList.parse(devices, Bytes.parse(memoryPerDevice));
        ExpertMemory memory = ExpertMemory.of(model);
        int spare = 0;
        int perDevice = 0;
        if (slots != null && slots.spare != null) {
            spare = slots.spare;
        } else if (slots != null && slots.perDevice != null) {
            perDevice = slots.perDevice;
            long total = (long) perDevice * deviceList.size();
            long experts = (long) memory.layers() * memory.experts();
            if (perDevice < 1 || total < experts) {
                throw new IllegalArgumentException("--slots-per-device " + perDevice + " × " + deviceList.size()
                        + " devices = " + total + " slots, fewer than the " + experts + " experts (" + memory.layers()
                        + " layers × " + memory.experts() + ")");
            }
            spare = (int) Math.min(Integer.MAX_VALUE, total - experts);
        }
        ExpertLoads expertLoads = LoadSources.resolve(loads, model, memory.layers(), memory.experts());
        PlacementPlan plan = Planner.plan(expertLoads, memory, new Planner.Request(deviceList, spare, perDevice));
        plan.write(out);

        PlacementStats planned = PlacementStats.of(plan, expertLoads, memory);
        PlacementStats baseline = PlacementStats.of(RoundRobin.plan(memory.layers(), memory.experts(), deviceList),
                expertLoads, memory);
        PrintStream stdout = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        print(stdout, plan, expertLoads, memory, spare, planned, baseline);
        stdout.printf(Locale.ROOT, "%nwrote %s%n", out);
        return 0;
    }

    static void print(PrintStream o, PlacementPlan plan, ExpertLoads loads, ExpertMemory memory, int spare,
                      PlacementStats planned, PlacementStats baseline) {
        int replicated = (int) plan.assignments().stream().filter(a -> a.devices().size() > 1).count();
        long smallest = Long.MAX_VALUE;
        long largest = 0;
        for (long[] row : memory.bytes()) {
            for (long b : row) {
                smallest = Math.min(smallest, b);
                largest = Math.max(largest, b);
            }
        }
        String size = smallest == largest ? Bytes.format(largest)
                : Bytes.format(smallest) + " to " + Bytes.format(largest);
        o.printf(Locale.ROOT, "%d layers × %d routed experts (%s each) on %d devices, %d spare replicas"
                        + " (%d experts replicated)%n", plan.layers(), plan.experts(), size,
                plan.devices().size(), spare, replicated);
        o.printf(Locale.ROOT, "loads: %s%n%n", loads.source());
        int width = Math.max(6, plan.devices().stream().mapToInt(d -> d.id().length()).max().orElse(6));
        String row = "%-" + width + "s  %8s  %10s  %10s  %7s  |  %8s  %7s%n";
        o.printf(Locale.ROOT, row, "device", "replicas", "memory", "budget", "load", "rr repl.", "rr load");
        for (int d = 0; d < plan.devices().size(); d++) {
            PlacementPlan.Device device = plan.devices().get(d);
            o.printf(Locale.ROOT, row, device.id(), planned.replicas()[d], Bytes.format(planned.memoryBytes()[d]),
                    device.memoryBytes() == 0 ? "-" : Bytes.format(device.memoryBytes()),
                    percent(planned.totalLoad(d) / plan.layers()), baseline.replicas()[d],
                    percent(baseline.totalLoad(d) / plan.layers()));
        }
        o.println();
        String cmp = "%-34s  %8s  %11s%n";
        o.printf(Locale.ROOT, cmp, "max/mean device load", "planner", "round-robin");
        for (int l = 0; l < plan.layers(); l++) {
            o.printf(Locale.ROOT, cmp, "layer " + l, ratio(planned.layerImbalance(l)), ratio(baseline.layerImbalance(l)));
        }
        o.printf(Locale.ROOT, cmp, "step (Σ layer max / Σ layer mean)", ratio(planned.stepImbalance()),
                ratio(baseline.stepImbalance()));
        o.printf(Locale.ROOT, cmp, "device totals (all layers)", ratio(planned.deviceImbalance()),
                ratio(baseline.deviceImbalance()));
    }

    private static String percent(double fraction) {
        return String.format(Locale.ROOT, "%.1f%%", fraction * 100);
    }

    private static String ratio(double r) {
        return String.format(Locale.ROOT, "%.3f", r);
    }
}
