package dev.cmoe.deploy.bench;

import ai.djl.Device;
import dev.cmoe.experts.DeviceCompute;
import dev.cmoe.experts.ExpertActor;
import dev.cmoe.experts.ExpertId;
import dev.cmoe.model.safetensors.DType;
import java.io.InputStream;
import java.io.PrintStream;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * The worker JVM of {@code cmoe bench-dispatch}: one device's {@link DeviceCompute} with no-op
 * experts of layer 0 and an {@link EchoActor}, reachable over loopback Artery. It prints the refs
 * the parent needs (one line each), then serves until its standard input closes.
 */
public final class DispatchWorker {
    private DispatchWorker() {
    }

    /** Serves {@code experts} of layer 0 as device {@code name} until {@code stdin} ends. */
    public static void run(String name, int hidden, DType dtype, List<Integer> experts, InputStream stdin,
                           PrintStream out) throws Exception {
        CompletableFuture<ActorRef<DeviceCompute.Command>> started = new CompletableFuture<>();
        ActorSystem<Void> system = ActorSystem.create(Behaviors.setup(ctx -> {
            ActorRefResolver refs = ActorRefResolver.get(ctx.getSystem());
            DispatcherSelector blocking = DispatcherSelector.fromConfig(ExpertActor.DISPATCHER);
            ActorRef<DeviceCompute.Command> compute = ctx.spawn(DeviceCompute.create(name, Device.cpu(), hidden,
                    dtype), "compute", blocking);
            out.println("COMPUTE " + refs.toSerializationFormat(compute));
            for (int j : experts) {
                ActorRef<ExpertActor.Command> e = ctx.spawn(ExpertActor.create(new ExpertId(0, j), NoOpExpert::new,
                        compute), "expert-" + j, blocking);
                out.println("EXPERT " + j + " " + refs.toSerializationFormat(e));
            }
            out.println("ECHO " + refs.toSerializationFormat(Adapter.toTyped(
                    Adapter.actorOf(ctx, EchoActor.props(), "echo"))));
            started.complete(compute);
            return Behaviors.empty();
        }), "cmoe", DispatchBench.config());
        try {
            // READY once every kernel is with the compute: the parent's first batch then finds them
            DispatchBench.awaitServed(system, started.get(60, TimeUnit.SECONDS), experts.size(), name);
            out.println("READY");
            out.flush();
            while (stdin.read() >= 0) {
                // the parent holds the pipe open while it measures
            }
        } finally {
            system.terminate();
        }
    }
}
