// The operator asks the registry before it moves a node to a driver image:
// a node whose precompiled image does not exist keeps the driver it has
// (no ImagePullBackOff), the policy says which image is missing, and the node
// moves once the image is pushed. The registry needs the policy's pull secret.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverDaemonSets, ensureNamespace, installCrd, waitForDriverPods, waitForState, waitForNoDriverPods } from "./harness/policy.ts";
import { localClient, pushImage, startRegistry, type LocalRegistry } from "./harness/registry.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { RegistryClient } from "../src/registry/client.ts";

const NS = "gpu-operator";
const nodes = [
  { name: "img-a", kernel: "5.15.0-69-generic" },
  { name: "img-b", kernel: "5.15.0-70-generic" },
];
let cluster: LocalCluster;
let client: KubeClient;
let registry: LocalRegistry;
let push: RegistryClient;
let operator: OperatorProcess | undefined;

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  await deletePolicies(client);
  registry = await startRegistry({ auth: "basic", users: { puller: "s3cret-pull" } });
  push = localClient(registry, { username: "puller", password: "s3cret-pull" });
  await pushImage(push, "nvidia/driver", ["550.54.15-ubuntu22.04", "525-5.15.0-69-generic-ubuntu22.04"]);
  await cluster.kubectl(["-n", NS, "delete", "secret", "regcred", "--ignore-not-found"]);
  await cluster.kubectl(["-n", NS, "create", "secret", "docker-registry", "regcred", `--docker-server=${registry.host}`, "--docker-username=puller", "--docker-password=s3cret-pull"]);
  for (const n of nodes) await createGpuNode(client, n);
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false, args: ["--plain-http-registries", registry.host, "--image-recheck-seconds", "1"] });
});

after(async () => {
  await operator?.stop();
  await deletePolicies(client).catch(() => undefined);
  // Delete the nodes only once their driver pods are gone: pods left on a deleted node linger until pod GC's quarantine ends.
  await waitForNoDriverPods(client, { timeoutMs: 120_000 }).catch(() => undefined);
  await deleteNodes(client, nodes.map((n) => n.name));
  await cluster.kubectl(["-n", NS, "delete", "secret", "regcred", "--ignore-not-found"]).catch(() => undefined);
  await push?.close();
  await registry?.stop();
  await client.close();
});

test("conventional images found with the pull secret's credentials roll out", async () => {
  await cluster.kubectl(["apply", "-f", "-"], {
    input: JSON.stringify({
      apiVersion: "nvidia.com/v1",
      kind: "ClusterPolicy",
      metadata: { name: "cluster-policy" },
      spec: { driver: { repository: `${registry.host}/nvidia`, version: "550.54.15", imagePullSecrets: ["regcred"] } },
    }),
  });
  await waitForDriverPods(client, 2);
  await waitForState(client, "ready");
});

test("a node whose precompiled image is missing keeps its driver, and the status names the image", async () => {
  await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op":"replace","path":"/spec/driver/usePrecompiled","value":true},{"op":"replace","path":"/spec/driver/version","value":"525"}]']);
  const policy = await eventually("PrecompiledImageMissing", async () => {
    const p = await client.get<{ status?: { conditions?: { type: string; reason: string; message: string }[] } }>("/apis/nvidia.com/v1/clusterpolicies/cluster-policy");
    const ready = p.status?.conditions?.find((c) => c.type === "Ready");
    return ready?.reason === "PrecompiledImageMissing" ? ready : undefined;
  });
  assert.match(policy.message, /525-5\.15\.0-70-generic-ubuntu22\.04/);
  assert.match(policy.message, /img-b: keeps the driver it runs now/, "img-b still runs its conventional driver, and only that is claimed");
  const pods = await waitForDriverPods(client, 2, (p) => (p.spec?.nodeName === "img-a" ? p.metadata.name!.includes("5.15.0-69-generic") : !p.metadata.name!.includes("5.15.0")));
  assert.deepEqual(pods.map((p) => p.spec?.nodeName), ["img-a", "img-b"]);
  const names = (await driverDaemonSets(client)).map((d) => d.metadata.name).sort();
  assert.deepEqual(names, ["nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04", "nvidia-driver-daemonset-ubuntu22.04"], "no DaemonSet for the missing image");
});

test("once the image is pushed, the node moves and the old DaemonSet goes away", async () => {
  await pushImage(push, "nvidia/driver", ["525-5.15.0-70-generic-ubuntu22.04"]);
  await waitForDriverPods(client, 2, (p) => /5\.15\.0-(69|70)-generic/.test(p.metadata.name!));
  await waitForState(client, "ready");
  await eventually("conventional DaemonSet pruned", async () => ((await driverDaemonSets(client)).every((d) => d.metadata.name!.includes("5.15.0")) ? true : undefined));
});

test("a pull secret that cannot be used is reported in a Warning Event, without its password", async () => {
  await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op":"replace","path":"/spec/driver/imagePullSecrets","value":["nosuch"]}]']);
  const event = await eventually("an ImageCheckFailed event", async () => {
    const events = await client.list<{ reason: string; type: string; message: string; involvedObject: { name: string } }>("/api/v1/namespaces/default/events");
    return events.items.find((e) => e.reason === "ImageCheckFailed" && e.involvedObject.name === "cluster-policy" && e.message.includes("nosuch"));
  });
  assert.equal(event.type, "Warning");
  assert.match(event.message, /pull secret gpu-operator\/nosuch \(it does not exist\)/);
  assert.doesNotMatch(event.message, /s3cret-pull/);
});
