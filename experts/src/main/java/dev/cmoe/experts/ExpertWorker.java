package dev.cmoe.experts;

import ai.djl.Device;
import dev.cmoe.model.llama.TensorSource;
import java.time.Duration;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;

/**
 * The experts of one device: spawns an {@link ExpertActor} per hosted expert and restarts any
 * that fails, so one device's faults are contained there and routers keep the same refs.
 */
public final class ExpertWorker extends AbstractBehavior<ExpertWorker.Command> {

    /** What a worker understands. */
    public sealed interface Command permits GetHosted {
    }

    /** Asks which experts this worker hosts, and their refs. */
    public record GetHosted(ActorRef<Hosted> replyTo) implements Command {
    }

    /**
     * The experts of one worker.
     *
     * @param experts expert → its actor, in spawn order (stable across restarts)
     */
    public record Hosted(String worker, Device device, Map<ExpertId, ActorRef<ExpertActor.Command>> experts) {
    }

    private final String name;
    private final Device device;
    private final Map<ExpertId, ActorRef<ExpertActor.Command>> experts = new LinkedHashMap<>(); // id -> actor

    private ExpertWorker(ActorContext<Command> context, String name, Device device, int hidden, int expertSize,
                         List<ExpertId> hosted, TensorSource source) {
        super(context);
        this.name = name;
        this.device = device;
        for (ExpertId id : hosted) {
            // Restart, not stop: a restarted expert reloads its weights in setup and keeps its ref,
            // so routers need not learn about the fault. Repeated faults still end it (limit).
            Behavior<ExpertActor.Command> supervised = Behaviors.supervise(
                            ExpertActor.create(id, hidden, expertSize, source, device))
                    .onFailure(SupervisorStrategy.restart().withLimit(10, Duration.ofMinutes(1)));
            experts.put(id, context.spawn(supervised, id.actorName(),
                    DispatcherSelector.fromConfig(ExpertActor.DISPATCHER)));
        }
    }

    /**
     * Hosts {@code hosted} experts on {@code device}, their weights read from {@code source} (which
     * must stay readable while the worker lives: restarts read it again).
     *
     * @param name the worker's name in placement reports, e.g. "cpu-0"
     */
    public static Behavior<Command> create(String name, Device device, int hidden, int expertSize,
                                           List<ExpertId> hosted, TensorSource source) {
        return Behaviors.setup(ctx -> new ExpertWorker(ctx, name, device, hidden, expertSize, List.copyOf(hosted),
                source));
    }

    @Override
    public Receive<Command> createReceive() {
        return newReceiveBuilder()
                .onMessage(GetHosted.class, this::onGetHosted)
                .build();
    }

    private Behavior<Command> onGetHosted(GetHosted g) {
        g.replyTo().tell(new Hosted(name, device, Collections.unmodifiableMap(new LinkedHashMap<>(experts))));
        return this;
    }
}
