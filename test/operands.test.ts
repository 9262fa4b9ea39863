// The operands besides the driver on the real cluster: NVIDIA's order per node
// (driver, then toolkit, then device plugin, GFD, exporter, validator), a
// simulated device plugin giving nodes nvidia.com/gpu so a GPU workload
// schedules, deploy labels, disabling an operand, driver.enabled false, status,
// and a steady state without writes.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { deleteNodes, gpuNodeObject, type SimulatedGpuNode } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, ensureNamespace, examplePolicy, getPolicy, installCrd, waitForState } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node, Pod } from "../src/kube/types.ts";

const NS = "gpu-operator";
const PODS = `/api/v1/namespaces/${NS}/pods`;
let cluster: LocalCluster;
let client: KubeClient;
let operator: OperatorProcess | undefined;
const nodeNames: string[] = [];
const watchStop = new AbortController();
/** Every pod event in the operator's namespace, in the API server's order. */
const podEvents: { type: string; app: string; node: string; ready: boolean }[] = [];

const ready = (p: Pod) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
/** A DaemonSet pod's node: spec.nodeName once bound, else the node its affinity pins it to. */
function targetNode(p: Pod): string {
  const spec = p.spec as { nodeName?: string; affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: { matchFields?: { values?: string[] }[] }[] } } } } | undefined;
  return spec?.nodeName ?? spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.[0]?.matchFields?.[0]?.values?.[0] ?? "";
}

/** A GPU node whose GPUs are not advertised yet: nvidia.com/gpu capacity comes from the (simulated) device plugin. */
async function createNode(n: SimulatedGpuNode): Promise<void> {
  const obj = gpuNodeObject(n);
  const capacity = { cpu: "16", memory: "64Gi", pods: "110" };
  Object.assign(obj.status as object, { capacity, allocatable: capacity });
  await client.create<Node>("/api/v1/nodes", obj);
  nodeNames.push(n.name);
}

async function operandPods(app: string): Promise<Pod[]> {
  return (await client.list<Pod>(PODS, { labelSelector: `app=${app}` })).items.filter((p) => !p.metadata.deletionTimestamp);
}

async function readyOn(app: string, nodes: string[]): Promise<Pod[]> {
  return eventually(`${app} Ready on ${nodes.join(", ")}`, async () => {
    const pods = (await operandPods(app)).filter((p) => ready(p));
    const on = pods.map((p) => p.spec?.nodeName).sort();
    if (JSON.stringify(on) !== JSON.stringify([...nodes].sort())) throw new Error(`ready on ${on.join(", ") || "none"}`);
    return pods;
  }, { timeoutMs: 180_000 });
}

/** The index of the first event for `app` on `node` matching `f`, or -1. */
const firstEvent = (app: string, node: string, f: (e: (typeof podEvents)[number]) => boolean = () => true) => podEvents.findIndex((e) => e.app === app && e.node === node && f(e));

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  await deletePolicies(client);
  const list = await client.list<Pod>(PODS);
  // Pods of an earlier run on nodes of the same names linger until pod GC removes them: not this run's.
  const earlier = new Set(list.items.map((p) => p.metadata.uid));
  void client.watch<Pod>(PODS, { resourceVersion: list.metadata.resourceVersion, timeoutSeconds: 1800 }, (e) => {
    if (e.type === "BOOKMARK" || e.type === "ERROR" || e.type === "DELETED" || earlier.has(e.object.metadata.uid)) return;
    podEvents.push({ type: e.type, app: e.object.metadata.labels?.["app"] ?? "", node: targetNode(e.object), ready: ready(e.object) });
  }, watchStop.signal).catch(() => undefined);
  operator = await startOperator({ kubeconfig: cluster.kubeconfig });
});

after(async () => {
  watchStop.abort();
  await operator?.stop();
  await deletePolicies(client).catch(() => undefined);
  await client.delete("/api/v1/namespaces/default/pods/gpu-workload").catch(() => undefined);
  await deleteNodes(client, nodeNames);
  await client.close();
});

describe("NVIDIA's operands in NVIDIA's order", () => {
  before(async () => {
    await createNode({ name: "opnd-a", kernel: "5.15.0-69-generic" });
    // Another OS (a mixed-OS cluster: a driver DaemonSet per OS, one of each operand for all),
    // and GFD kept off this node by NVIDIA's deploy label.
    await createNode({ name: "opnd-b", kernel: "6.8.0-1047-oracle", os: { id: "ubuntu", versionId: "24.04" }, labels: { "nvidia.com/gpu.deploy.gpu-feature-discovery": "false" } });
    // A workload asking for a GPU, waiting for a node that advertises one.
    await client.create("/api/v1/namespaces/default/pods", {
      metadata: { name: "gpu-workload" },
      spec: {
        nodeSelector: { "kubernetes.io/hostname": "opnd-a" },
        tolerations: [{ key: "kwok.x-k8s.io/node", operator: "Exists", effect: "NoSchedule" }],
        containers: [{ name: "cuda", image: "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", resources: { limits: { "nvidia.com/gpu": "1" } } }],
      },
    });
    await cluster.kubectl(["apply", "-f", "-"], { input: examplePolicy });
  });

  test("each node gets the driver, then the toolkit, then the device plugin, GFD, exporter and validator", async () => {
    await readyOn("nvidia-device-plugin-daemonset", ["opnd-a", "opnd-b"]);
    await readyOn("nvidia-dcgm-exporter", ["opnd-a", "opnd-b"]);
    await readyOn("nvidia-operator-validator", ["opnd-a", "opnd-b"]);
    const drivers = (await client.list<Pod>(PODS, { labelSelector: "app=nvidia-driver-daemonset" })).items.filter((p) => !p.metadata.deletionTimestamp);
    const driverSet = (node: string) => drivers.find((p) => p.spec?.nodeName === node)?.metadata.ownerReferences?.[0]?.name;
    assert.deepEqual([driverSet("opnd-a"), driverSet("opnd-b")], ["nvidia-driver-daemonset-ubuntu22.04", "nvidia-driver-daemonset-ubuntu24.04"], "one driver DaemonSet per OS");
    for (const app of ["nvidia-container-toolkit-daemonset", "nvidia-device-plugin-daemonset", "nvidia-operator-validator"]) {
      const owners = new Set((await operandPods(app)).map((p) => p.metadata.ownerReferences?.[0]?.name));
      assert.deepEqual([...owners], [app], `${app}: one DaemonSet for both OSes`);
    }
    for (const node of ["opnd-a", "opnd-b"]) {
      const driverReady = firstEvent("nvidia-driver-daemonset", node, (e) => e.ready);
      const toolkitSeen = firstEvent("nvidia-container-toolkit-daemonset", node);
      const toolkitReady = firstEvent("nvidia-container-toolkit-daemonset", node, (e) => e.ready);
      assert.ok(driverReady >= 0 && toolkitSeen > driverReady, `${node}: the toolkit pod (event ${toolkitSeen}) came after the driver was Ready (event ${driverReady})`);
      for (const app of ["nvidia-device-plugin-daemonset", "nvidia-dcgm-exporter", "nvidia-operator-validator"]) {
        const seen = firstEvent(app, node);
        assert.ok(toolkitReady >= 0 && seen > toolkitReady, `${node}: ${app} (event ${seen}) came after the toolkit was Ready (event ${toolkitReady})`);
      }
    }
  });

  test("a deploy label set to false keeps an operand off that node", async () => {
    await readyOn("gpu-feature-discovery", ["opnd-a"]);
    const policy = await eventually("gfd status for one node", async () => {
      const p = await getPolicy(client);
      const gfd = p.status?.operands?.find((o) => o.name === "gfd");
      return gfd?.state === "ready" && gfd["nodes"] === 1 ? p : undefined;
    });
    assert.equal(policy.status?.operands?.find((o) => o.name === "devicePlugin")?.["nodes"], 2);
  });

  test("a Ready device plugin (simulated: the node gets nvidia.com/gpu) lets a GPU workload schedule", async () => {
    const [plugin] = await readyOn("nvidia-device-plugin-daemonset", ["opnd-a", "opnd-b"]).then((ps) => ps.filter((p) => p.spec?.nodeName === "opnd-a"));
    assert.ok(plugin);
    const pending = await client.get<Pod>("/api/v1/namespaces/default/pods/gpu-workload");
    assert.equal(pending.spec?.nodeName, undefined, "no node advertises a GPU before the device plugin runs");
    const gpus = { "nvidia.com/gpu": "4", cpu: "16", memory: "64Gi", pods: "110" };
    await client.mergePatch("/api/v1/nodes/opnd-a/status", { status: { capacity: gpus, allocatable: gpus } });
    await eventually("the GPU workload scheduled on opnd-a", async () => {
      const p = await client.get<Pod>("/api/v1/namespaces/default/pods/gpu-workload");
      return p.spec?.nodeName === "opnd-a" ? true : undefined;
    }, { timeoutMs: 120_000 });
  });

  test("state ready only once every enabled operand is ready; per-operand status; MIG manager said to be unsupported", async () => {
    const p = await waitForState(client, "ready", "cluster-policy", 180_000);
    const states = Object.fromEntries((p.status?.operands ?? []).map((o) => [o.name, o.state]));
    assert.deepEqual(states, { toolkit: "ready", validator: "ready", devicePlugin: "ready", gfd: "ready", dcgmExporter: "ready" });
    await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=merge", "-p", '{"spec":{"migManager":{"enabled":true}}}']);
    await eventually("migManager reported unsupported", async () => ((await getPolicy(client)).status?.operands?.find((o) => o.name === "migManager")?.state === "unsupported" ? true : undefined));
    const svc = await client.get<{ spec: { ports: { name: string; port: number }[] } }>(`/api/v1/namespaces/${NS}/services/nvidia-dcgm-exporter`);
    assert.deepEqual(svc.spec.ports.map((x) => [x.name, x.port]), [["gpu-metrics", 9400]]);
  });

  test("the steady state makes no writes", async () => {
    await waitForState(client, "ready", "cluster-policy", 180_000);
    await new Promise((r) => setTimeout(r, 2000));
    const before = await operator!.writes();
    await new Promise((r) => setTimeout(r, 5000));
    assert.equal(await operator!.writes(), before, "writes during a quiet period");
  });

  test("disabling an operand removes its objects; its status says disabled", async () => {
    await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=merge", "-p", '{"spec":{"dcgmExporter":{"enabled":false}}}']);
    await eventually("the exporter DaemonSet and Service gone", async () => {
      const ds = await client.get(`/apis/apps/v1/namespaces/${NS}/daemonsets/nvidia-dcgm-exporter`).then(() => true, () => false);
      const svc = await client.get(`/api/v1/namespaces/${NS}/services/nvidia-dcgm-exporter`).then(() => true, () => false);
      return !ds && !svc ? true : undefined;
    });
    await eventually("dcgmExporter disabled in the status", async () => ((await getPolicy(client)).status?.operands?.find((o) => o.name === "dcgmExporter")?.state === "disabled" ? true : undefined));
  });

  test("an operand the policy cannot render: status and a Warning Event say what to fix; nothing running changes", async () => {
    const toolkitBefore = await client.get<{ metadata: { generation: number } }>(`/apis/apps/v1/namespaces/${NS}/daemonsets/nvidia-container-toolkit-daemonset`);
    await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=merge", "-p", '{"spec":{"toolkit":{"repository":"registry.example.com/nv","version":"v9"}}}']);
    const policy = await eventually("operands in error", async () => {
      const p = await getPolicy(client);
      return p.status?.operands?.[0]?.state === "error" && p.status.state === "notReady" ? p : undefined;
    });
    assert.match(String(policy.status?.operands?.[0]?.["message"]), /spec\.toolkit.*add image/);
    await eventually("an OperandConfigInvalid event", async () => {
      const events = await client.list<{ reason: string; involvedObject: { uid?: string } }>("/api/v1/namespaces/default/events");
      return events.items.some((e) => e.reason === "OperandConfigInvalid" && e.involvedObject.uid === policy.metadata.uid) ? true : undefined;
    });
    const toolkitAfter = await client.get<{ metadata: { generation: number } }>(`/apis/apps/v1/namespaces/${NS}/daemonsets/nvidia-container-toolkit-daemonset`);
    assert.equal(toolkitAfter.metadata.generation, toolkitBefore.metadata.generation);
    await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=merge", "-p", '{"spec":{"toolkit":{"repository":null,"version":null}}}']);
    await waitForState(client, "ready", "cluster-policy", 180_000);
  });

  test("driver.enabled false (a driver on the host): a new node gets the toolkit and device plugin without a driver pod", async () => {
    await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=merge", "-p", '{"spec":{"driver":{"enabled":false}}}']);
    await createNode({ name: "opnd-c", kernel: "6.8.0-1047-oracle", os: { id: "ubuntu", versionId: "24.04" } });
    await readyOn("nvidia-device-plugin-daemonset", ["opnd-a", "opnd-b", "opnd-c"]);
    const driverOnC = (await operandPods("nvidia-driver-daemonset")).filter((p) => targetNode(p) === "opnd-c");
    assert.equal(driverOnC.length, 0);
    assert.ok(firstEvent("nvidia-container-toolkit-daemonset", "opnd-c") < firstEvent("nvidia-device-plugin-daemonset", "opnd-c", (e) => e.node === "opnd-c"));
    await waitForState(client, "ready", "cluster-policy", 180_000);
  });
});
