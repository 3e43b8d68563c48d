import dev.cmoe.proto.v1.GenerateRequest;
import dev.cmoe.proto.v1.GenerateResponse;
import dev.cmoe.proto.v1.GenerationGrpc;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import java.util.Iterator;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.ArrayList;
import java.util.List;

/**
 * Sends a burst of huge text prompts to a CMoE server, as a hostile client would, and reports how
 * each was answered and how long it took; then one ordinary request, to show the server still
 * serves. Run by bench/abuse-rss.sh against `./cmoe serve`, which measures the server's RSS around it.
 *
 * <p>Arguments: HOST:PORT REQUESTS PROMPT_BYTES CONCURRENCY
 */
public class AbuseClient {
    public static void main(String[] args) throws Exception {
        String target = args[0];
        int requests = Integer.parseInt(args[1]);
        int bytes = Integer.parseInt(args[2]);
        int concurrency = Integer.parseInt(args[3]);
        String prompt = "jury ".repeat(bytes / 5 + 1).substring(0, bytes);
        ManagedChannel channel = Grpc.newChannelBuilder(target, InsecureChannelCredentials.create())
                .maxInboundMessageSize(16 << 20).build();
        ExecutorService pool = Executors.newFixedThreadPool(concurrency);
        Map<String, Integer> codes = new TreeMap<>();
        List<Future<String>> calls = new ArrayList<>();
        long start = System.nanoTime();
        long[] worst = {0};
        for (int i = 0; i < requests; i++) {
            calls.add(pool.submit(() -> {
                long t0 = System.nanoTime();
                String code;
                try {
                    Iterator<GenerateResponse> it = GenerationGrpc.newBlockingStub(channel)
                            .withDeadlineAfter(60, TimeUnit.SECONDS)
                            .generate(GenerateRequest.newBuilder().setText(prompt).setMaxNewTokens(4).build());
                    it.forEachRemaining(r -> { });
                    code = "OK";
                } catch (RuntimeException e) {
                    Status s = Status.fromThrowable(e);
                    code = s.getCode() + ": " + (s.getDescription() == null ? "" : s.getDescription()
                            .replaceAll("[0-9]+ bytes, over", "N bytes, over"));
                }
                synchronized (worst) {
                    worst[0] = Math.max(worst[0], System.nanoTime() - t0);
                }
                return code;
            }));
        }
        for (Future<String> f : calls) {
            codes.merge(f.get(), 1, Integer::sum);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        System.out.printf("abuse: %d prompts of %,d bytes (%d at a time) in %.2f s, slowest answer %.3f s%n",
                requests, bytes, concurrency, seconds, worst[0] / 1e9);
        codes.forEach((c, n) -> System.out.printf("abuse:   %4d x %s%n", n, c));
        List<GenerateResponse> ok = new ArrayList<>();
        GenerationGrpc.newBlockingStub(channel).withDeadlineAfter(60, TimeUnit.SECONDS)
                .generate(GenerateRequest.newBuilder().setText("The jury said").setMaxNewTokens(8).build())
                .forEachRemaining(ok::add);
        System.out.printf("abuse: an ordinary request afterwards got %d messages, the last %s%n", ok.size(),
                ok.isEmpty() ? "none" : ok.getLast().hasFinal() ? "a Final" : "not a Final");
        pool.shutdownNow();
        channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
}
