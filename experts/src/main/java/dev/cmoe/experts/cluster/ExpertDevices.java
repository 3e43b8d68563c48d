package dev.cmoe.experts.cluster;

import dev.cmoe.experts.ExpertShape;
import dev.cmoe.experts.ExpertWorker;
import dev.cmoe.model.llama.TensorSource;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.receptionist.Receptionist;

/**
 * Makes a node an expert worker: one {@link ExpertWorker} per device, empty until the head
 * places experts on it, registered with the receptionist so the head discovers it.
 */
public final class ExpertDevices {
    private ExpertDevices() {
    }

    /**
     * Spawns and registers the workers of {@code devices} under {@code system}'s system guardian.
     *
     * @param worker this node's worker name (the first half of every device id)
     * @param memoryPerDevice what each device may spend on expert weights; 0 = a GPU's free memory
     *     ({@link DeviceSpec#memoryBudget}), the CPU not limited
     * @param source the shared checkpoint's tensors; must stay readable while the workers live
     * @param secret what the devices prove to the head before it gives them experts
     * @return the device workers, in the order of {@code devices}
     */
    public static List<ActorRef<ExpertWorker.Command>> start(ActorSystem<?> system, String worker,
                                                              List<DeviceSpec> devices, ExpertShape shape,
                                                              TensorSource source, long memoryPerDevice,
                                                              int maxFrameBytes, ClusterSecret secret) {
        return start(system, worker, devices, shape, source, memoryPerDevice, maxFrameBytes, secret, reason -> { });
    }

    /** As {@link #start(ActorSystem, String, List, ExpertShape, TensorSource, long, int, ClusterSecret)}, telling {@code onRefused} when the head refuses a device. */
    public static List<ActorRef<ExpertWorker.Command>> start(ActorSystem<?> system, String worker,
                                                              List<DeviceSpec> devices, ExpertShape shape,
                                                              TensorSource source, long memoryPerDevice,
                                                              int maxFrameBytes, ClusterSecret secret,
                                                              Consumer<String> onRefused) {
        if (!worker.matches("[A-Za-z0-9_.-]+")) {
            throw new IllegalArgumentException("worker name \"" + worker
                    + "\" must be letters, digits, '.', '_' or '-' (it is the WORKER of WORKER/DEVICE ids)");
        }
        if (memoryPerDevice < 0) {
            throw new IllegalArgumentException("--memory-per-device must be ≥ 0, got " + memoryPerDevice);
        }
        List<ActorRef<ExpertWorker.Command>> refs = new ArrayList<>();
        for (DeviceSpec d : devices) {
            ActorRef<ExpertWorker.Command> ref = system.systemActorOf(ExpertWorker.create(d.id(worker), d.device(),
                    shape, source, d.memoryBudget(memoryPerDevice), maxFrameBytes, List.of(), secret, onRefused), d.actorName(),
                    Props.empty());
            system.receptionist().tell(Receptionist.register(ExpertWorker.SERVICE_KEY, ref));
            refs.add(ref);
        }
        return refs;
    }
}
