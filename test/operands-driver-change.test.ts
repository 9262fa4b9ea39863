// The operands during driver changes, on the real cluster: a driver version
// upgrade (in place, maxParallelUpgrades 1) and the fallback's pool moves (a
// kernel upgrade with no precompiled image, then back once it is pushed), with
// NVIDIA's operands on. Every pod event of the namespace and every upgrade-state
// change is recorded with its resourceVersion (one etcd: one order across both
// watches), so the test can show, per node: the operands stop before the driver
// the upgrade takes away goes, the toolkit comes back only after the new driver
// is Ready, the device plugin, GFD, exporter and validator only after the new
// toolkit is Ready; the upgrade budget holds; the node is validated by its
// operator validator pod; and everything ends ready.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverPods, ensureNamespace, installCrd, POLICY_PATH, waitForState, waitForNoDriverPods } from "./harness/policy.ts";
import { localClient, pushImage, startRegistry, type LocalRegistry } from "./harness/registry.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node, Pod } from "../src/kube/types.ts";
import type { RegistryClient } from "../src/registry/client.ts";

const NS = "gpu-operator";
const STATE = "nvidia.com/gpu-driver-upgrade-state";
const IN_PROGRESS = new Set(["cordon-required", "wait-for-jobs-required", "pod-deletion-required", "drain-required", "pod-restart-required", "validation-required", "uncordon-required"]);
const DRIVER = "nvidia-driver-daemonset";
const TOOLKIT = "nvidia-container-toolkit-daemonset";
const AFTER_TOOLKIT = ["nvidia-device-plugin-daemonset", "gpu-feature-discovery", "nvidia-dcgm-exporter", "nvidia-operator-validator"];
const OPERAND_APPS = [TOOLKIT, ...AFTER_TOOLKIT];

let cluster: LocalCluster;
let client: KubeClient;
let operator: OperatorProcess | undefined;
let registry: LocalRegistry;
let push: RegistryClient;
const nodeNames: string[] = [];
const watchStop = new AbortController();

interface PodEvent { rv: number; type: string; app: string; node: string; uid: string; ready: boolean; deleting: boolean }
interface StateEvent { rv: number; node: string; state: string }
const podEvents: PodEvent[] = [];
const stateEvents: StateEvent[] = [];
const earlier = new Set<string>();

/** A DaemonSet pod's node: spec.nodeName once bound, else the node its affinity pins it to (a new pod's first events). */
function targetNode(p: Pod): string {
  const spec = p.spec as { nodeName?: string; affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: { matchFields?: { values?: string[] }[] }[] } } } } | undefined;
  return spec?.nodeName ?? spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.[0]?.matchFields?.[0]?.values?.[0] ?? "";
}

const isReady = (p: Pod) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;

async function watchAll(): Promise<void> {
  const pods = await client.list<Pod>(`/api/v1/namespaces/${NS}/pods`);
  for (const p of pods.items) earlier.add(p.metadata.uid ?? "");
  void client.watch<Pod>(`/api/v1/namespaces/${NS}/pods`, { resourceVersion: pods.metadata.resourceVersion, timeoutSeconds: 1800 }, (e) => {
    if (e.type === "BOOKMARK" || e.type === "ERROR" || earlier.has(e.object.metadata.uid ?? "")) return;
    const p = e.object;
    podEvents.push({ rv: Number(p.metadata.resourceVersion), type: e.type, app: p.metadata.labels?.["app"] ?? "", node: targetNode(p), uid: p.metadata.uid ?? "", ready: isReady(p), deleting: e.type === "DELETED" || p.metadata.deletionTimestamp !== undefined });
  }, watchStop.signal).catch(() => undefined);
  const nodes = await client.list<Node>("/api/v1/nodes");
  const last = new Map<string, string>();
  void client.watch<Node>("/api/v1/nodes", { resourceVersion: nodes.metadata.resourceVersion, timeoutSeconds: 1800 }, (e) => {
    if (e.type === "BOOKMARK" || e.type === "ERROR") return;
    const name = e.object.metadata.name ?? "";
    const state = e.type === "DELETED" ? "" : (e.object.metadata.labels?.[STATE] ?? "");
    if (last.get(name) === state) return;
    last.set(name, state);
    stateEvents.push({ rv: Number(e.object.metadata.resourceVersion), node: name, state });
  }, watchStop.signal).catch(() => undefined);
}

/** The pods (uids) of `app` on `node` from the events, in the order first seen. */
const uidsOf = (app: string, node: string, from = 0) => [...new Set(podEvents.filter((e) => e.rv >= from && e.app === app && e.node === node).map((e) => e.uid))];
const firstRv = (f: (e: PodEvent) => boolean) => podEvents.find(f)?.rv ?? Infinity;

/** Waits until every node runs its Ready driver pod and every operand Ready, and the policy is ready. */
async function allReady(nodes: string[], driverImage?: (node: string) => string): Promise<void> {
  await eventually(`drivers and operands Ready on ${nodes.join(", ")}`, async () => {
    const pods = (await client.list<Pod>(`/api/v1/namespaces/${NS}/pods`)).items.filter((p) => !p.metadata.deletionTimestamp);
    for (const node of nodes) {
      for (const app of [DRIVER, ...OPERAND_APPS]) {
        const mine = pods.filter((p) => p.spec?.nodeName === node && p.metadata.labels?.["app"] === app);
        if (mine.length !== 1 || !isReady(mine[0]!)) throw new Error(`${node}: ${app} ${mine.map((p) => `${p.metadata.name}:${isReady(p)}`).join(",") || "none"}`);
        const img = (mine[0]!.spec?.containers?.[0]?.image ?? "").replace(/@sha256:[0-9a-f]{64}$/, "");
        if (app === DRIVER && driverImage && img !== driverImage(node)) throw new Error(`${node}: driver ${img}`);
      }
    }
    return true;
  }, { timeoutMs: 240_000 });
  await waitForState(client, "ready", "cluster-policy", 180_000);
}

/**
 * NVIDIA's order on `node` for a driver change that started at resourceVersion `from`: the new
 * toolkit pod is created after the new driver pod is Ready, the other operands after the new
 * toolkit is Ready. With `stopFirst`, the old operand pods were gone before the old driver pod
 * was being deleted (the upgrade's restart waits for them). Returns a readable timeline.
 */
function assertOrder(node: string, from: number, stopFirst: boolean): string[] {
  const drivers = uidsOf(DRIVER, node);
  const oldDriver = drivers.find((uid) => firstRv((e) => e.uid === uid) < from && firstRv((e) => e.uid === uid && e.type === "DELETED") > from);
  const newDriver = drivers.find((uid) => firstRv((e) => e.uid === uid) > from);
  assert.ok(newDriver, `${node}: a new driver pod`);
  const newDriverReady = firstRv((e) => e.uid === newDriver && e.ready);
  const timeline = podEvents.filter((e) => e.node === node && e.rv >= from && (e.app === DRIVER || OPERAND_APPS.includes(e.app))).map((e) => `${e.rv} ${e.app} ${e.uid.slice(0, 6)} ${e.type}${e.ready ? " ready" : ""}${e.deleting ? " deleting" : ""}`);
  const why = `\n${timeline.join("\n")}`;
  for (const app of OPERAND_APPS) {
    // The pods running when the change began.
    const olds = uidsOf(app, node).filter((uid) => firstRv((e) => e.uid === uid) < from && firstRv((e) => e.uid === uid && e.type === "DELETED") > from);
    assert.ok(olds.length > 0, `${node}: ${app} ran before the change${why}`);
    for (const old of olds) {
      const gone = firstRv((e) => e.uid === old && e.type === "DELETED");
      assert.ok(gone < Infinity, `${node}: the old ${app} pod was removed${why}`);
      if (stopFirst && oldDriver) {
        const driverGoes = firstRv((e) => e.uid === oldDriver && e.deleting);
        assert.ok(gone < driverGoes, `${node}: the old ${app} pod (gone at ${gone}) went before the old driver pod (deleted at ${driverGoes})${why}`);
      }
    }
  }
  const toolkit = uidsOf(TOOLKIT, node, from).find((uid) => firstRv((e) => e.uid === uid && e.type === "ADDED") > from);
  assert.ok(toolkit, `${node}: a new toolkit pod${why}`);
  const toolkitAdded = firstRv((e) => e.uid === toolkit && e.type === "ADDED");
  assert.ok(toolkitAdded > newDriverReady, `${node}: the new toolkit (added at ${toolkitAdded}) came after the new driver was Ready (${newDriverReady})${why}`);
  const toolkitReady = firstRv((e) => e.uid === toolkit && e.ready);
  for (const app of AFTER_TOOLKIT) {
    const added = firstRv((e) => e.app === app && e.node === node && e.type === "ADDED" && e.rv > from);
    assert.ok(added < Infinity && added > toolkitReady, `${node}: the new ${app} (added at ${added}) came after the new toolkit was Ready (${toolkitReady})${why}`);
  }
  return timeline;
}

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  await deletePolicies(client);
  await watchAll();
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false, args: ["--image-recheck-seconds", "1"] });
});

after(async () => {
  watchStop.abort();
  await operator?.stop();
  await deletePolicies(client).catch(() => undefined);
  await deleteNodes(client, nodeNames);
  await push?.close();
  await registry?.stop();
  await client.close();
});

describe("a driver version upgrade with the operands on", () => {
  const nodes = ["opup-1", "opup-2", "opup-3"];
  before(async () => {
    nodeNames.push(...nodes);
    for (const name of nodes) await createGpuNode(client, { name, kernel: "5.15.0-69-generic" });
    await cluster.kubectl(["apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy" },
        spec: { driver: { repository: "nvcr.io/nvidia", version: "550.54.15", upgradePolicy: { autoUpgrade: true, maxParallelUpgrades: 1, maxUnavailable: 1 } } },
      }),
    });
    await allReady(nodes, () => "nvcr.io/nvidia/driver:550.54.15-ubuntu22.04");
  });

  test("each node: operands stop, the driver restarts, toolkit then the rest come back; one node at a time; validated by its validator; all ready", async () => {
    const from = podEvents.at(-1)!.rv + 1;
    const stateFrom = stateEvents.length;
    await client.mergePatch(`${POLICY_PATH}/cluster-policy`, { spec: { driver: { version: "550.90.07" } } });
    await eventually("every node upgrade-done on 550.90.07", async () => {
      for (const name of nodes) {
        const n = await client.get<Node>(`/api/v1/nodes/${name}`);
        if (n.metadata.labels?.[STATE] !== "upgrade-done") throw new Error(`${name}: ${n.metadata.labels?.[STATE]}`);
      }
      const pods = await driverPods(client);
      return nodes.every((name) => pods.some((p) => p.spec?.nodeName === name && p.spec?.containers?.[0]?.image === "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04")) ? true : undefined;
    }, { timeoutMs: 300_000 });
    await allReady(nodes, () => "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");

    for (const node of nodes) assertOrder(node, from, true);

    // The budget: never two nodes in an upgrade step at once.
    const current = new Map<string, string>();
    let most = 0;
    for (const e of stateEvents.slice(stateFrom)) {
      current.set(e.node, e.state);
      most = Math.max(most, [...current.values()].filter((s) => IN_PROGRESS.has(s)).length);
    }
    assert.equal(most, 1, `nodes in an upgrade step at once: ${stateEvents.slice(stateFrom).map((e) => `${e.node}:${e.state}`).join(" ")}`);
    // Metrics and Events: every node's operands ready again; each node said why its operands stopped,
    // in the upgrade's start Event (the gates closed in that step's own patch: no Event of their own).
    const metrics = await operator!.metrics();
    for (const operand of ["toolkit", "devicePlugin", "gfd", "dcgmExporter", "validator"]) {
      assert.match(metrics, new RegExp(`^gpuop_operand_nodes\\{operand="${operand}",state="ready"\\} 3$`, "m"));
      assert.match(metrics, new RegExp(`^gpuop_operand_nodes\\{operand="${operand}",state="waiting"\\} 0$`, "m"));
    }
    const events = await client.list<{ reason: string; message: string; involvedObject: { kind: string; name: string; uid?: string } }>("/api/v1/namespaces/default/events");
    for (const node of nodes) {
      const uid = (await client.get<Node>(`/api/v1/nodes/${node}`)).metadata.uid;
      const mine = events.items.filter((x) => x.involvedObject.kind === "Node" && x.involvedObject.uid === uid);
      const e = mine.find((x) => x.reason === "DriverUpgradeStarted");
      assert.match(e?.message ?? "", /^driver pod is outdated; upgrade started; node cordoned; NVIDIA's operands on this node stop, and come back in order/, node);
      assert.deepEqual(mine.filter((x) => x.reason === "OperandsStopped"), [], node);
    }
    // Validation as NVIDIA's: a node leaves validation-required only once its new validator pod is Ready.
    for (const node of nodes) {
      const validated = stateEvents.find((e) => e.node === node && e.state === "uncordon-required" && e.rv > from)?.rv ?? Infinity;
      const validatorReady = firstRv((e) => e.app === "nvidia-operator-validator" && e.node === node && e.rv > from && e.ready && !e.deleting);
      assert.ok(validatorReady < validated, `${node}: the validator was Ready (${validatorReady}) before the node left validation-required (${validated})`);
    }
  });

  after(async () => {
    await deletePolicies(client);
    await waitForNoDriverPods(client, { timeoutMs: 120_000 });
  });
});

describe("the fallback's pool moves with the operands on", () => {
  const node = "opfb-1";
  const image = (tag: string) => `${registry.host}/nvidia/driver:${tag}`;
  before(async () => {
    registry = await startRegistry();
    push = localClient(registry);
    await pushImage(push, "nvidia/driver", ["525-5.15.0-69-generic-ubuntu22.04", "525.105.17-ubuntu22.04"]);
    await operator?.stop();
    operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false, args: ["--plain-http-registries", registry.host, "--image-recheck-seconds", "1"] });
    nodeNames.push(node);
    await createGpuNode(client, { name: node, kernel: "5.15.0-69-generic" });
    await cluster.kubectl(["apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy" },
        spec: { driver: { repository: `${registry.host}/nvidia`, usePrecompiled: true, version: "525", upgradePolicy: { maxUnavailable: "100%" } } },
      }),
    });
    await allReady([node], () => image("525-5.15.0-69-generic-ubuntu22.04"));
  });

  test("a kernel upgrade without a precompiled image: the old driver goes, the operands go, and come back in order on the conventional driver", async () => {
    const from = podEvents.at(-1)!.rv + 1;
    await client.mergePatch(`/api/v1/nodes/${node}`, { metadata: { labels: { "feature.node.kubernetes.io/kernel-version.full": "5.15.0-70-generic" } } });
    await allReady([node], () => image("525.105.17-ubuntu22.04"));
    // No upgrade step here: the old pool no longer selects the node, so its driver was already gone.
    assertOrder(node, from, false);
  });

  test("the precompiled image pushed: the move back goes through the upgrade steps, operands stopped first, then in order", async () => {
    const from = podEvents.at(-1)!.rv + 1;
    await pushImage(push, "nvidia/driver", ["525-5.15.0-70-generic-ubuntu22.04"]);
    await allReady([node], () => image("525-5.15.0-70-generic-ubuntu22.04"));
    assertOrder(node, from, true);
  });
});
