// Never without a driver: the real operator, a real registry on 127.0.0.1 and
// kwok nodes. A GPU node whose precompiled image is missing after a kernel
// upgrade runs the conventional driver of its branch (the newest version the
// registry holds for its OS) and goes back once the precompiled image is
// pushed; a precompiled pod that cannot pull falls back after the grace
// period; with the fallback off, or without a conventional image, the status
// says the node has no driver, in those words.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverDaemonSets, driverPods, ensureNamespace, installCrd, POLICY_PATH } from "./harness/policy.ts";
import { localClient, pushImage, startRegistry, type LocalRegistry } from "./harness/registry.ts";
import { repoRoot } from "./harness/tools.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node, Pod } from "../src/kube/types.ts";
import type { RegistryClient } from "../src/registry/client.ts";

const NS = "gpu-operator";
const KERNEL_LABEL = "feature.node.kubernetes.io/kernel-version.full";
const POOL_LABEL = "gpuop.nvidia.com/driver-pool";
const CONVENTIONAL_DS = "nvidia-driver-daemonset-ubuntu22.04";
const nodeNames = ["fb-1", "fb-2", "fb-3", "fb-4"];
let cluster: LocalCluster;
let client: KubeClient;
let registry: LocalRegistry;
let push: RegistryClient;
let operator: OperatorProcess | undefined;

interface Condition { type: string; status: string; reason: string; message: string }
type PolicyObj = { metadata: { generation?: number }; status?: { observedGeneration?: number; conditions?: Condition[] } };

const image = (tag: string) => `${registry.host}/nvidia/driver:${tag}`;

/** The Ready condition once it has the reason wanted (and reflects the policy's generation). */
async function readyCondition(reason: string, match: (c: Condition) => boolean = () => true): Promise<Condition> {
  return eventually(`Ready condition ${reason}`, async () => {
    const p = await client.get<PolicyObj>(`${POLICY_PATH}/cluster-policy`);
    const c = p.status?.conditions?.find((x) => x.type === "Ready");
    if (c?.reason !== reason || !match(c)) throw new Error(JSON.stringify(c));
    return c;
  }, { timeoutMs: 120_000 });
}

/** The one Running driver pod on a node, once it runs `img`. */
async function podOn(node: string, img: string): Promise<Pod> {
  return eventually(`a Running driver pod with ${img} on ${node}`, async () => {
    const pods = (await driverPods(client)).filter((p) => p.spec?.nodeName === node && !p.metadata.deletionTimestamp);
    const desc = pods.map((p) => `${p.metadata.name}:${p.spec?.containers?.[0]?.image}:${p.status?.phase}`).join(", ");
    // The operator pins each precompiled pool's tag to the digest the registry serves (issue 9): compare tags.
    const tagOnly = (pods[0]?.spec?.containers?.[0]?.image ?? "").replace(/@sha256:[0-9a-f]{64}$/, "");
    if (pods.length !== 1 || tagOnly !== img || pods[0]!.status?.phase !== "Running") throw new Error(desc || "no pod");
    return pods[0]!;
  }, { timeoutMs: 120_000 });
}

/** What NFD does after the node reboots into another kernel. */
async function setKernel(node: string, kernel: string) {
  await client.mergePatch(`/api/v1/nodes/${node}`, { metadata: { labels: { [KERNEL_LABEL]: kernel } } });
}

function gpuopStatus(): Promise<{ nodes: { node: string; mode: string; daemonSet: string; image: string; reason?: string }[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(repoRoot, "bin/gpuop"), ["status", "--kubeconfig", cluster.kubeconfig, "-o", "json"]);
    let out = "";
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`gpuop status exited ${code}`))));
  });
}

async function applyPolicy(annotations: Record<string, string> = {}) {
  await cluster.kubectl(["apply", "-f", "-"], {
    input: JSON.stringify({
      apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy", annotations },
      spec: { driver: { repository: `${registry.host}/nvidia`, usePrecompiled: true, version: "525", upgradePolicy: { maxUnavailable: "100%" } } },
    }),
  });
}

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  await deletePolicies(client);
  registry = await startRegistry();
  push = localClient(registry);
  await pushImage(push, "nvidia/driver", ["525-5.15.0-69-generic-ubuntu22.04", "525.60.13-ubuntu22.04", "525.105.17-ubuntu22.04", "535.183.01-ubuntu22.04", "525.147.05-rhel9"]);
  await createGpuNode(client, { name: "fb-1", kernel: "5.15.0-69-generic" });
  // The grace period is short so the test does not wait minutes; the pod's own status dates the failure.
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false, args: ["--plain-http-registries", registry.host, "--image-recheck-seconds", "1", "--image-pull-grace-seconds", "3"] });
  await applyPolicy();
});

after(async () => {
  await operator?.stop();
  await deletePolicies(client).catch(() => undefined);
  await deleteNodes(client, nodeNames);
  await push?.close();
  await registry?.stop();
  await client.close();
});

test("a kernel upgrade without a precompiled image: the node runs the newest conventional 525 for its OS, and goes back once the image is pushed", async () => {
  await podOn("fb-1", image("525-5.15.0-69-generic-ubuntu22.04"));
  await setKernel("fb-1", "5.15.0-70-generic");

  const pod = await podOn("fb-1", image("525.105.17-ubuntu22.04"));
  assert.equal(pod.metadata.labels?.[POOL_LABEL], CONVENTIONAL_DS);
  const ready = await readyCondition("ConventionalFallback");
  assert.match(ready.message, /fb-1: conventional driver \S+:525\.105\.17-ubuntu22\.04 \(fallback: the registry has no precompiled image \S+:525-5\.15\.0-70-generic-ubuntu22\.04\)/);
  assert.doesNotMatch(ready.message, /keep/);
  const row = (await gpuopStatus()).nodes.find((n) => n.node === "fb-1");
  assert.equal(row?.mode, "fallback");
  assert.equal(row?.daemonSet, CONVENTIONAL_DS);
  assert.match(row?.reason ?? "", /the registry has no precompiled image/);
  const uid = (await client.get<Node>("/api/v1/nodes/fb-1")).metadata.uid;
  const nodeEvent = await eventually("a ConventionalFallback event on the node", async () => {
    const events = await client.list<{ reason: string; type: string; message: string; involvedObject: { kind: string; name: string; uid?: string } }>("/api/v1/namespaces/default/events");
    return events.items.find((e) => e.reason === "ConventionalFallback" && e.involvedObject.kind === "Node" && e.involvedObject.uid === uid);
  });
  assert.match(nodeEvent.message, /^runs the conventional driver \S+:525\.105\.17-ubuntu22\.04: the registry has no precompiled image/);
  const metrics = await operator!.metrics();
  assert.match(metrics, /^gpuop_gpu_node_drivers\{mode="fallback"\} 1$/m);

  await pushImage(push, "nvidia/driver", ["525-5.15.0-70-generic-ubuntu22.04"]);
  const back = await podOn("fb-1", image("525-5.15.0-70-generic-ubuntu22.04"));
  assert.equal(back.metadata.labels?.[POOL_LABEL], "nvidia-driver-daemonset-5.15.0-70-generic-ubuntu22.04");
  await readyCondition("Reconciled");
  await eventually("the fallback DaemonSet pruned", async () => ((await driverDaemonSets(client)).every((d) => d.metadata.name !== CONVENTIONAL_DS) ? true : undefined));
  const node = await client.get<Node>("/api/v1/nodes/fb-1");
  assert.equal(node.metadata.annotations?.["gpuop.nvidia.com/driver-fallback"], undefined, "the note is cleared once the node is back");
});

test("a precompiled pod that cannot pull its image falls back after the grace period", async () => {
  const pod = await podOn("fb-1", image("525-5.15.0-70-generic-ubuntu22.04"));
  const path = `/api/v1/namespaces/${NS}/pods/${pod.metadata.name}/status`;
  const since = new Date(Date.now() - 1000).toISOString().replace(/\.\d+Z$/, "Z");
  // The kubelet would report this for an image the node cannot pull. kwok owns pod status and may
  // write it back, so the test writes it again until the operator has acted.
  const failing = {
    status: {
      phase: "Pending",
      conditions: [
        { type: "PodScheduled", status: "True", lastTransitionTime: since },
        { type: "Initialized", status: "True", lastTransitionTime: since },
        { type: "ContainersReady", status: "False", reason: "ContainersNotReady", lastTransitionTime: since },
        { type: "Ready", status: "False", reason: "ContainersNotReady", lastTransitionTime: since },
      ],
      containerStatuses: [{ name: "nvidia-driver-ctr", image: pod.spec?.containers?.[0]?.image, imageID: "", ready: false, restartCount: 0, started: false, state: { waiting: { reason: "ErrImagePull", message: "failed to pull: no route to host" } } }],
    },
  };
  const marked = await eventually("the node marked with the image it cannot pull", async () => {
    const current = await client.get<Pod>(path.replace(/\/status$/, "")).catch(() => undefined);
    if (current && !current.metadata.deletionTimestamp && current.status?.containerStatuses?.[0]?.state?.waiting?.reason !== "ErrImagePull") {
      await client.mergePatch(path, failing).catch(() => undefined);
    }
    const node = await client.get<Node>("/api/v1/nodes/fb-1");
    return node.metadata.annotations?.["gpuop.nvidia.com/precompiled-pull-failed"];
  }, { timeoutMs: 120_000, intervalMs: 500 });
  assert.equal(marked, image("525-5.15.0-70-generic-ubuntu22.04"));
  await podOn("fb-1", image("525.105.17-ubuntu22.04"));
  const ready = await readyCondition("ConventionalFallback");
  assert.match(ready.message, /fb-1: conventional driver \S+:525\.105\.17-ubuntu22\.04 \(fallback: its precompiled image \S+:525-5\.15\.0-70-generic-ubuntu22\.04 could not be pulled on the node\)/);

  // The mark lives on the node: a restarted operator does not send the node back into the same pull failure.
  await operator!.stop();
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false, args: ["--plain-http-registries", registry.host, "--image-recheck-seconds", "1", "--image-pull-grace-seconds", "3"] });
  await eventually("the new operator has reconciled twice", async () => {
    const m = /^gpuop_reconcile_total\{result="success"\} (\d+)$/m.exec(await operator!.metrics());
    return Number(m?.[1] ?? 0) >= 2 ? true : undefined;
  });
  const after = await podOn("fb-1", image("525.105.17-ubuntu22.04"));
  assert.equal(after.metadata.labels?.[POOL_LABEL], CONVENTIONAL_DS);
  assert.equal((await client.get<Node>("/api/v1/nodes/fb-1")).metadata.labels?.[POOL_LABEL], CONVENTIONAL_DS);
});

test("with neither a precompiled nor a conventional image for its OS, a node has no driver and the status says so", async () => {
  await createGpuNode(client, { name: "fb-2", kernel: "6.8.0-40-generic", os: { id: "ubuntu", versionId: "24.04" } });
  const ready = await readyCondition("NoDriver", (c) => c.message.includes("fb-2"));
  assert.match(ready.message, /fb-2: no driver \(the registry has no precompiled image \S+:525-6\.8\.0-40-generic-ubuntu24\.04, and the registry has no conventional 525 image for ubuntu24\.04 either/);
  assert.doesNotMatch(ready.message, /fb-2[^;]*keep/);
  const event = await eventually("a NoDriver event", async () => {
    const events = await client.list<{ reason: string; type: string; message: string; involvedObject: { name: string } }>("/api/v1/namespaces/default/events");
    return events.items.find((e) => e.reason === "NoDriver" && e.involvedObject.name === "cluster-policy" && e.message.includes("fb-2"));
  });
  assert.equal(event.type, "Warning");
  const row = (await gpuopStatus()).nodes.find((n) => n.node === "fb-2");
  assert.equal(row?.mode, "none");
  assert.match(row?.reason ?? "", /^no driver: /);
  await deleteNodes(client, ["fb-2"]);
});

test("with the fallback turned off on the policy, a node whose image is missing has no driver; turned on again, it falls back", async () => {
  await applyPolicy({ "gpuop.nvidia.com/conventional-fallback": "false" });
  await createGpuNode(client, { name: "fb-3", kernel: "5.15.0-72-generic" });
  const ready = await readyCondition("NoDriver", (c) => c.message.includes("fb-3"));
  assert.match(ready.message, /fb-3: no driver \(the registry has no precompiled image \S+:525-5\.15\.0-72-generic-ubuntu22\.04, and the conventional fallback is turned off\)/);
  const pods = (await driverPods(client)).filter((p) => p.spec?.nodeName === "fb-3");
  assert.deepEqual(pods, [], "no driver pod on fb-3");
  // fb-1 (on the conventional driver since its pull failure) still runs it: it is said to keep it, and only it.
  assert.match(ready.message, /fb-1: keeps the driver it runs now \(its precompiled image \S+ could not be pulled on the node, and the conventional fallback is turned off\)/);
  const rows = (await gpuopStatus()).nodes;
  assert.match(rows.find((n) => n.node === "fb-1")?.reason ?? "", /^keeps the driver it runs now: /);
  assert.match(rows.find((n) => n.node === "fb-3")?.reason ?? "", /^no driver: /);

  await applyPolicy();
  await podOn("fb-3", image("525.105.17-ubuntu22.04"));
});

test("the issue's message: a node that booted a kernel without an image (fallback off) is said to have no driver, not to keep one", async () => {
  await applyPolicy({ "gpuop.nvidia.com/conventional-fallback": "false" });
  await createGpuNode(client, { name: "fb-4", kernel: "5.15.0-69-generic" });
  await podOn("fb-4", image("525-5.15.0-69-generic-ubuntu22.04"));
  await setKernel("fb-4", "5.15.0-73-generic");
  const ready = await readyCondition("NoDriver", (c) => c.message.includes("fb-4"));
  assert.match(ready.message, /fb-4: no driver \(the registry has no precompiled image \S+:525-5\.15\.0-73-generic-ubuntu22\.04, and the conventional fallback is turned off\)/);
  assert.doesNotMatch(ready.message, /fb-4[^;]*keep/);
  await eventually("no driver pod on fb-4", async () => ((await driverPods(client)).some((p) => p.spec?.nodeName === "fb-4" && !p.metadata.deletionTimestamp) ? undefined : true));
  const row = (await gpuopStatus()).nodes.find((n) => n.node === "fb-4");
  assert.equal(row?.mode, "none");
  await applyPolicy();
});
