package dev.cmoe.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;

/**
 * deploy/k8s cannot be applied here (no cluster), so this parses every manifest and checks what a
 * cluster would only reveal at run time: selectors that match pods, ports and volumes that exist,
 * env references that resolve, the headless seed service, GPU requests, and the CLI flags the
 * containers pass.
 */
class KubernetesManifestsTest {
    private static final Path K8S = Path.of("k8s");
    private static final Pattern VAR = Pattern.compile("\\$\\(([A-Z_][A-Z0-9_]*)\\)");

    /** kind/name -> the parsed object, over every document of every manifest. */
    @SuppressWarnings("unchecked")
    private static Map<String, Map<String, Object>> objects() throws IOException {
        Map<String, Map<String, Object>> out = new HashMap<>();
        Yaml yaml = new Yaml(new LoaderOptions());
        try (Stream<Path> files = Files.list(K8S)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".yaml")).sorted().toList()) {
                if (f.getFileName().toString().equals("kustomization.yaml")) {
                    continue;
                }
                for (Object doc : yaml.loadAll(Files.readString(f, StandardCharsets.UTF_8))) {
                    Map<String, Object> o = (Map<String, Object>) doc;
                    assertNotNull(o.get("apiVersion"), f + ": a document without apiVersion");
                    String name = (String) map(o, "metadata").get("name");
                    assertNotNull(name, f + ": a document without metadata.name");
                    if (out.put(o.get("kind") + "/" + name, o) != null) {
                        fail(f + ": " + o.get("kind") + "/" + name + " defined twice");
                    }
                }
            }
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> map(Map<String, Object> o, String... path) {
        Map<String, Object> at = o;
        for (String p : path) {
            at = (Map<String, Object>) at.get(p);
            assertNotNull(at, "missing " + String.join(".", path));
        }
        return at;
    }

    @SuppressWarnings("unchecked")
    private static List<Map<String, Object>> list(Map<String, Object> o, String key) {
        Object v = o.get(key);
        return v == null ? List.of() : (List<Map<String, Object>>) v;
    }

    private static Map<String, Object> podSpec(Map<String, Object> workload) {
        return map(workload, "spec", "template", "spec");
    }

    private static Map<String, Object> container(Map<String, Object> workload) {
        List<Map<String, Object>> containers = list(podSpec(workload), "containers");
        assertEquals(1, containers.size());
        return containers.get(0);
    }

    @SuppressWarnings("unchecked")
    private static List<String> args(Map<String, Object> workload) {
        return ((List<Object>) container(workload).get("args")).stream().map(String::valueOf).toList();
    }

    @Test
    void kustomizationListsEveryManifest() throws IOException {
        @SuppressWarnings("unchecked")
        Map<String, Object> k = (Map<String, Object>) new Yaml().load(Files.readString(K8S.resolve("kustomization.yaml")));
        @SuppressWarnings("unchecked")
        Set<String> listed = new HashSet<>((List<String>) k.get("resources"));
        Set<String> present = new HashSet<>();
        try (Stream<Path> files = Files.list(K8S)) {
            files.map(p -> p.getFileName().toString())
                    .filter(n -> n.endsWith(".yaml") && !n.equals("kustomization.yaml")).forEach(present::add);
        }
        assertEquals(present, listed);
        assertTrue(Files.isRegularFile(K8S.resolve("README.md")));
    }

    @Test
    void servicesSelectPodsAndPortsExist() throws IOException {
        Map<String, Map<String, Object>> all = objects();
        Map<String, Object> head = all.get("Deployment/cmoe-head");
        Map<String, Object> workers = all.get("StatefulSet/cmoe-worker");
        assertNotNull(head);
        assertNotNull(workers);
        for (Map<String, Object> w : List.of(head, workers)) {
            // a workload's selector must select its own pods
            Map<String, Object> labels = map(w, "spec", "template", "metadata", "labels");
            map(w, "spec", "selector", "matchLabels").forEach((k, v) -> assertEquals(v, labels.get(k), k));
        }
        for (Map.Entry<String, Map<String, Object>> e : all.entrySet()) {
            if (!e.getKey().startsWith("Service/")) {
                continue;
            }
            Map<String, Object> selector = map(e.getValue(), "spec", "selector");
            List<Map<String, Object>> selected = new ArrayList<>();
            for (Map<String, Object> w : List.of(head, workers)) {
                Map<String, Object> labels = map(w, "spec", "template", "metadata", "labels");
                if (selector.entrySet().stream().allMatch(s -> s.getValue().equals(labels.get(s.getKey())))) {
                    selected.add(w);
                }
            }
            assertFalse(selected.isEmpty(), e.getKey() + " selects no pods");
            for (Map<String, Object> port : list(map(e.getValue(), "spec"), "ports")) {
                Object target = port.get("targetPort");
                for (Map<String, Object> w : selected) {
                    assertTrue(list(container(w), "ports").stream().anyMatch(p -> target.equals(p.get("name"))
                            || target.equals(p.get("containerPort"))), e.getKey() + " targets port " + target
                            + " that " + map(w, "metadata").get("name") + " does not declare");
                }
            }
        }
    }

    @Test
    void clusterSeedsResolveThroughTheHeadlessService() throws IOException {
        Map<String, Map<String, Object>> all = objects();
        Map<String, Object> seeds = map(all.get("Service/cmoe-cluster"), "spec");
        assertEquals("None", seeds.get("clusterIP"));
        assertEquals(true, seeds.get("publishNotReadyAddresses"), "DNS must exist before the head turns ready");
        assertEquals("cmoe-cluster", map(all.get("StatefulSet/cmoe-worker"), "spec").get("serviceName"));
        Map<String, Object> headPod = podSpec(all.get("Deployment/cmoe-head"));
        String headDns = headPod.get("hostname") + "." + headPod.get("subdomain");
        assertEquals("cmoe-head.cmoe-cluster", headDns);

        List<String> head = args(all.get("Deployment/cmoe-head"));
        List<String> worker = args(all.get("StatefulSet/cmoe-worker"));
        String seed = head.get(head.indexOf("--cluster-seed") + 1);
        assertEquals(seed, worker.get(worker.indexOf("--cluster-seed") + 1), "one seed for all");
        // the head declares itself under the name the workers dial, or Artery drops their messages
        assertEquals(seed, head.get(head.indexOf("--cluster-host") + 1) + ":" + head.get(head.indexOf("--cluster-port") + 1));
        assertTrue(seed.startsWith(headDns + "."), seed);
        assertEquals("$(POD_NAME)", worker.get(worker.indexOf("--name") + 1));
        assertTrue(worker.get(worker.indexOf("--cluster-host") + 1).startsWith("$(POD_NAME).cmoe-cluster."));
        assertEquals("head", head.get(head.indexOf("--role") + 1));
    }

    @Test
    void envReferencesResolveAndGpusMatchDevices() throws IOException {
        Map<String, Map<String, Object>> all = objects();
        @SuppressWarnings("unchecked")
        Map<String, String> config = (Map<String, String>) all.get("ConfigMap/cmoe-config").get("data");
        for (String workload : List.of("Deployment/cmoe-head", "StatefulSet/cmoe-worker")) {
            Map<String, Object> c = container(all.get(workload));
            Set<String> defined = new HashSet<>();
            for (Map<String, Object> from : list(c, "envFrom")) {
                assertEquals("cmoe-config", map(from, "configMapRef").get("name"));
                defined.addAll(config.keySet());
            }
            list(c, "env").forEach(e -> defined.add((String) e.get("name")));
            for (String arg : args(all.get(workload))) {
                Matcher m = VAR.matcher(arg);
                while (m.find()) {
                    assertTrue(defined.contains(m.group(1)), workload + " uses $(" + m.group(1) + ") but defines no such variable");
                }
            }
            // the model volume exists and is mounted read-only
            Map<String, Object> models = list(podSpec(all.get(workload)), "volumes").stream()
                    .filter(v -> "models".equals(v.get("name"))).findFirst().orElseThrow();
            String claim = (String) map(models, "persistentVolumeClaim").get("claimName");
            assertNotNull(all.get("PersistentVolumeClaim/" + claim), workload + " mounts missing claim " + claim);
            assertTrue(list(c, "volumeMounts").stream().anyMatch(v -> "models".equals(v.get("name"))
                    && Boolean.TRUE.equals(v.get("readOnly")) && config.get("CMOE_MODEL").startsWith(v.get("mountPath") + "/")));
        }
        Map<String, Object> limits = map(container(all.get("StatefulSet/cmoe-worker")), "resources", "limits");
        long gpus = Long.parseLong(String.valueOf(limits.get("nvidia.com/gpu")));
        assertEquals(gpus, config.get("CMOE_WORKER_DEVICES").split(",").length, "one device per requested GPU");
        assertTrue(config.get("CMOE_WORKER_DEVICES").matches("gpu:\\d+(,gpu:\\d+)*"));
        Long.parseLong(config.get("CMOE_MEMORY_PER_DEVICE"));
        Map<String, Object> readiness = map(container(all.get("Deployment/cmoe-head")), "readinessProbe", "grpc");
        assertEquals(50051, readiness.get("port"), "the head is ready when gRPC health says SERVING");
    }

    @Test
    void dockerImageMatchesTheManifests() throws IOException {
        String dockerfile = Files.readString(Path.of("..", "Dockerfile"));
        assertTrue(dockerfile.contains("EXPOSE 50051 9464 25520"));
        assertTrue(dockerfile.contains("USER 10001:10001"), "runAsUser in the manifests is 10001");
        assertTrue(Files.isExecutable(Path.of("docker", "cmoe")));
        assertTrue(Files.readString(Path.of("docker", "cmoe")).contains("dev.cmoe.deploy.Cli"));
        // the GPU workers' image: same ports and user, and the engine pointed at its CUDA libtorch
        String cuda = Files.readString(Path.of("..", "Dockerfile.cuda"));
        assertTrue(cuda.contains("EXPOSE 50051 9464 25520"));
        assertTrue(cuda.contains("USER 10001:10001"));
        assertTrue(cuda.contains("CMOE_LIBTORCH=/opt/libtorch") && cuda.contains("COPY --from=libtorch /opt/libtorch"));
        assertTrue(cuda.contains("2.7.1%2Bcu128.zip"), "the version and flavour of the JNI's CUDA build");
    }

    @Test
    void gpuWorkersRunTheCudaImage() throws IOException {
        Map<String, Map<String, Object>> all = objects();
        assertTrue(Files.readString(Path.of("k8s", "kustomization.yaml")).contains(
                "  - name: cmoe-cuda # workers: docker build -f Dockerfile.cuda -t cmoe:0.1.0-cuda .\n"
                        + "    newName: cmoe\n    newTag: 0.1.0-cuda\n"), "kustomize maps the workers' image to the CUDA build's tag");
        assertEquals("cmoe-cuda", container(all.get("StatefulSet/cmoe-worker")).get("image"));
        assertEquals("cmoe", container(all.get("Deployment/cmoe-head")).get("image"));
    }

    /** Every flag the containers pass is one the command accepts. */
    @Test
    void containerFlagsAreOptionsOfTheirCommands() throws IOException {
        CommandLine cli = new CommandLine(new Cli());
        assertTrue(cli.getSubcommands().containsKey("worker"), "cmoe worker is a subcommand");
        Map<String, Map<String, Object>> all = objects();
        for (String workload : List.of("Deployment/cmoe-head", "StatefulSet/cmoe-worker")) {
            List<String> args = args(all.get(workload));
            CommandSpec spec = cli.getSubcommands().get(args.get(0)).getCommandSpec();
            for (String a : args) {
                if (a.startsWith("--")) {
                    assertNotNull(spec.findOption(a), workload + ": cmoe " + args.get(0) + " has no option " + a);
                }
            }
        }
    }
}
