package dev.cmoe.server.cluster;

import dev.cmoe.server.InferenceServer;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

/** What a head's placement coordinator reports now: the cluster tests wait on it. */
final class HeadPlacement {
    private HeadPlacement() {
    }

    static PlacementCoordinator.PlacementView of(InferenceServer head) throws Exception {
        return AskPattern.<PlacementCoordinator.Command, PlacementCoordinator.PlacementView>ask(
                        head.head().coordinator(), PlacementCoordinator.GetPlacement::new, Duration.ofSeconds(10),
                        head.system().scheduler())
                .toCompletableFuture().get(15, TimeUnit.SECONDS);
    }
}
