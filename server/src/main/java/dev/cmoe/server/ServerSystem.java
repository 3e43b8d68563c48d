package dev.cmoe.server;

import com.typesafe.config.Config;
import dev.cmoe.experts.cluster.ClusterSettings;
import dev.cmoe.server.scheduler.SchedulerActor;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.Terminated;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

/**
 * A server's actor system and its scheduler. The guardian only starts the scheduler as its child
 * and watches it: a scheduler that stops (or fails) stops the system, as when it was the guardian,
 * while the system's own identity stays apart from any one actor's protocol.
 *
 * @param system the actor system (the head's cluster node, or a local one)
 * @param scheduler its scheduler actor, {@code /user/scheduler}
 */
record ServerSystem(ActorSystem<Void> system, ActorRef<SchedulerActor.Command> scheduler) {
    /** Starts the system and waits for its guardian to have spawned {@code scheduler}. */
    static ServerSystem start(Behavior<SchedulerActor.Command> scheduler, Config config) {
        CompletableFuture<ActorRef<SchedulerActor.Command>> spawned = new CompletableFuture<>();
        ActorSystem<Void> system = ActorSystem.create(Behaviors.<Void>setup(ctx -> {
            ActorRef<SchedulerActor.Command> ref = ctx.spawn(scheduler, "scheduler");
            ctx.watch(ref);
            spawned.complete(ref);
            return Behaviors.receive(Void.class).onSignal(Terminated.class, t -> {
                ctx.getLog().error("the scheduler stopped; stopping the server's actor system");
                return Behaviors.stopped();
            }).build();
        }), ClusterSettings.SYSTEM_NAME, config);
        try {
            return new ServerSystem(system, spawned.get(30, TimeUnit.SECONDS));
        } catch (InterruptedException | ExecutionException | TimeoutException e) {
            system.terminate();
            if (e instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            throw new IllegalStateException("the scheduler did not start within 30 s: " + e, e);
        }
    }
}
