// Driver upgrades on the real cluster: NVIDIA's per-node state machine
// (nvidia.com/gpu-driver-upgrade-state), its budget, PodDisruptionBudgets,
// waitForCompletion, cordons kept, autoUpgrade false, precompiled branch
// changes, mode switches through the same safe path, and an operator killed
// mid-upgrade. kwok runs the pods; evicted pods go at once (no kubelet grace).
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes, type SimulatedGpuNode } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverPods, ensureNamespace, getPolicy, installCrd, POLICY_PATH, waitForNoDriverPods } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "./harness/tools.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node, Pod } from "../src/kube/types.ts";

const NS = "gpu-operator";
const WORK_NS = "upgrade-jobs";
const STATE = "nvidia.com/gpu-driver-upgrade-state";
const IN_PROGRESS = new Set(["cordon-required", "wait-for-jobs-required", "pod-deletion-required", "drain-required", "pod-restart-required", "validation-required", "uncordon-required"]);
let cluster: LocalCluster;
let client: KubeClient;
let operator: OperatorProcess | undefined;
let nodeNames: string[] = [];

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  await ensureNamespace(client, WORK_NS);
  await deletePolicies(client);
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
});

after(async () => {
  await operator?.stop();
  await cleanup();
  await client.close();
});

async function cleanup(): Promise<void> {
  await cluster.kubectl(["-n", WORK_NS, "delete", "deployments,jobs,pods,pdb", "--all", "--wait=false"]).catch(() => undefined);
  await deletePolicies(client).catch(() => undefined);
  await waitForNoDriverPods(client, { timeoutMs: 120_000 });
  await deleteNodes(client, nodeNames);
  nodeNames = [];
}

async function setup(nodes: SimulatedGpuNode[], driver: Record<string, unknown>): Promise<void> {
  nodeNames = nodes.map((n) => n.name);
  for (const n of nodes) await createGpuNode(client, n);
  await cluster.kubectl(["apply", "-f", "-"], {
    input: JSON.stringify({ apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy" }, spec: { driver: { repository: "nvcr.io/nvidia", ...driver } } }),
  });
  await waitAllDone(nodeNames);
}

const patchDriver = (driver: Record<string, unknown>) => client.mergePatch(`${POLICY_PATH}/cluster-policy`, { spec: { driver } });
const getNode = (name: string) => client.get<Node>(`/api/v1/nodes/${name}`);
const image = (p: Pod) => p.spec?.containers?.[0]?.image ?? "";
const ready = (p: Pod) => !p.metadata.deletionTimestamp && p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;

/** Waits until every node is upgrade-done with one Ready driver pod (optionally a matching image); returns the pods by node. */
async function waitAllDone(names: string[], wantImage?: (node: string) => string, timeoutMs = 240_000): Promise<Map<string, Pod>> {
  return eventually(`${names.join(", ")} upgrade-done`, async () => {
    const pods = await driverPods(client);
    const byNode = new Map<string, Pod>();
    for (const name of names) {
      const node = await getNode(name);
      const state = node.metadata.labels?.[STATE];
      const mine = pods.filter((p) => p.spec?.nodeName === name);
      if (state !== "upgrade-done" || mine.length !== 1 || !ready(mine[0]!)) throw new Error(`${name}: ${state} ${mine.map((p) => `${p.metadata.name}:${image(p)}:${ready(p)}`).join(",")}`);
      if (wantImage && image(mine[0]!) !== wantImage(name)) throw new Error(`${name} runs ${image(mine[0]!)}`);
      byNode.set(name, mine[0]!);
    }
    return byNode;
  }, { timeoutMs, intervalMs: 300 });
}

/** Samples, until stopped, the most nodes at once without a Ready driver pod and the most in an upgrade step. */
function sampler(names: string[]) {
  let maxWithoutDriver = 0;
  let maxInProgress = 0;
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const [pods, nodes] = await Promise.all([driverPods(client), client.list<Node>("/api/v1/nodes")]);
      const withDriver = new Set(pods.filter(ready).map((p) => p.spec?.nodeName));
      maxWithoutDriver = Math.max(maxWithoutDriver, names.filter((n) => !withDriver.has(n)).length);
      maxInProgress = Math.max(maxInProgress, nodes.items.filter((n) => names.includes(n.metadata.name!) && IN_PROGRESS.has(n.metadata.labels?.[STATE] ?? "")).length);
      samples++;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { maxWithoutDriver, maxInProgress, samples };
    },
  };
}

/** A Deployment of one pod using a GPU, kept on `node` (by hostname, so a cordon keeps it off). */
async function gpuWorkload(name: string, node: string, labels: Record<string, string> = {}): Promise<void> {
  await client.create(`/apis/apps/v1/namespaces/${WORK_NS}/deployments`, {
    metadata: { name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name, ...labels } },
        spec: {
          nodeSelector: { "kubernetes.io/hostname": node },
          containers: [{ name: "train", image: "registry.invalid/train:1", resources: { limits: { "nvidia.com/gpu": "1" } } }],
        },
      },
    },
  });
}

async function runningPodOf(app: string, node: string): Promise<Pod> {
  return eventually(`${app} running on ${node}`, async () => {
    const { items } = await client.list<Pod>(`/api/v1/namespaces/${WORK_NS}/pods`, { labelSelector: `app=${app}` });
    return items.find((p) => p.spec?.nodeName === node && p.status?.phase === "Running" && !p.metadata.deletionTimestamp);
  }, { timeoutMs: 120_000 });
}

/** The node's Events, oldest first (by resourceVersion: their names end in random characters); by uid, not those of an earlier node of that name. */
async function nodeEvents(node: string): Promise<{ reason: string; message: string; type: string }[]> {
  const uid = (await getNode(node)).metadata.uid;
  const { items } = await client.list<{ metadata: { resourceVersion?: string }; reason: string; message: string; type: string; involvedObject: { kind: string; name: string; uid?: string } }>("/api/v1/namespaces/default/events");
  return items.filter((e) => e.involvedObject.kind === "Node" && e.involvedObject.name === node && e.involvedObject.uid === uid).sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
}

describe("a conventional version bump", () => {
  afterEach(cleanup);

  test("upgrades every node, never past maxUnavailable, evicting GPU pods and keeping a cordon made before", async () => {
    const names = ["upg-a", "upg-b", "upg-c", "upg-d", "upg-e"];
    await setup(names.map((name) => ({ name, kernel: "5.15.0-69-generic" })), { version: "550.54.15", upgradePolicy: { maxParallelUpgrades: 0, maxUnavailable: 2 } });
    const before = new Map<string, string>();
    for (const n of names.slice(0, 3)) {
      await gpuWorkload(`job-${n}`, n);
      before.set(n, (await runningPodOf(`job-${n}`, n)).metadata.uid!);
    }
    await cluster.kubectl(["cordon", "upg-e"]);
    const sample = sampler(names);
    await patchDriver({ version: "550.90.07" });
    const pods = await waitAllDone(names, () => "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");
    const seen = await sample.stop();
    assert.ok(seen.samples > 10, `only ${seen.samples} samples`);
    assert.ok(seen.maxWithoutDriver <= 2, `${seen.maxWithoutDriver} nodes at once without a Ready driver; budget 2`);
    // kwok brings a new driver pod up within milliseconds, so also count the nodes in an upgrade step (cordoned, being drained).
    assert.ok(seen.maxInProgress <= 2, `${seen.maxInProgress} nodes at once in an upgrade step; budget 2`);
    assert.ok(seen.maxWithoutDriver >= 1, "the sampler never saw a node without its driver");
    assert.equal(pods.size, 5);
    // GPU pods were evicted (their Deployment made new ones once the node was uncordoned).
    for (const n of names.slice(0, 3)) assert.notEqual((await runningPodOf(`job-${n}`, n)).metadata.uid, before.get(n), n);
    for (const n of names.slice(0, 4)) assert.equal((await getNode(n)).spec?.unschedulable ?? false, false, `${n} uncordoned`);
    assert.equal((await getNode("upg-e")).spec?.unschedulable, true, "a node cordoned before the upgrade stays cordoned");
    // Events for what a user acts on (docs/adr/0005): the start (cordoned, the operands stopping,
    // merged: no OperandsStopped of its own), the pods evicted, the end; none for the steps between.
    const events = (await nodeEvents("upg-a")).filter((e) => e.reason.startsWith("DriverUpgrade") || e.reason === "OperandsStopped");
    assert.deepEqual(events.map((e) => e.reason), ["DriverUpgradeStarted", "DriverUpgradePodsEvicted", "DriverUpgradeDone"]);
    assert.match(events[0]!.message, /upgrade started; node cordoned; NVIDIA's operands on this node stop/);
    assert.match(events[1]!.message, /^GPU pods evicted for the driver upgrade: upgrade-jobs\/job-upg-a-/);
    // The policy runs the operands: validation waited for the node's operator validator too.
    assert.match(events[2]!.message, /new driver and the operator validator are Ready; node uncordoned; upgrade done/);
    // A node without GPU pods: nothing evicted, nothing said about it.
    assert.deepEqual((await nodeEvents("upg-d")).filter((e) => e.reason.startsWith("DriverUpgrade") || e.reason === "OperandsStopped").map((e) => e.reason), ["DriverUpgradeStarted", "DriverUpgradeDone"]);
    const policy = await eventually("status counts", async () => {
      const p = await getPolicy(client);
      return p.status?.upgrades?.nodesByState["upgrade-done"] === 5 && p.status.state === "ready" ? p : undefined;
    });
    assert.deepEqual(policy.status?.upgrades?.failed, []);
    const metrics = await operator!.metrics();
    assert.match(metrics, /^gpuop_driver_upgrade_nodes\{state="upgrade-done"\} 5$/m);
    // The upgrade's steps are node labels and its new drivers are pods: the watches brought both.
    const watched = (resource: string) => Number(new RegExp(`^gpuop_watch_events_total\\{resource="${resource}",outcome="handled"\\} (\\d+)$`, "m").exec(metrics)?.[1] ?? 0);
    assert.ok(watched("nodes") >= 5 * 4, `node changes watched: ${watched("nodes")}`);
    assert.ok(watched("pods") >= 5 * 2, `pod changes watched: ${watched("pods")}`);
  });

  test("a PodDisruptionBudget that forbids eviction keeps its node waiting, then failing at the timeout, while the others go on; a retry after the fix finishes", async () => {
    const names = ["pdb-a", "pdb-b", "pdb-c"];
    await setup(names.map((name) => ({ name, kernel: "5.15.0-69-generic" })), {
      version: "550.54.15",
      upgradePolicy: { maxParallelUpgrades: 0, maxUnavailable: "100%", podDeletion: { timeoutSeconds: 8 } },
    });
    await gpuWorkload("guarded", "pdb-b");
    await runningPodOf("guarded", "pdb-b");
    await client.create(`/apis/policy/v1/namespaces/${WORK_NS}/poddisruptionbudgets`, { metadata: { name: "guarded" }, spec: { minAvailable: 1, selector: { matchLabels: { app: "guarded" } } } });
    await eventually("PDB observed", async () => ((await client.get<{ status?: { observedGeneration?: number; disruptionsAllowed?: number; currentHealthy?: number } }>(`/apis/policy/v1/namespaces/${WORK_NS}/poddisruptionbudgets/guarded`)).status?.currentHealthy === 1 ? true : undefined));
    const sample = sampler(["pdb-b"]);
    await patchDriver({ version: "550.90.07" });
    await waitAllDone(["pdb-a", "pdb-c"], () => "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");
    const failed = await eventually("pdb-b failed", async () => ((await getNode("pdb-b")).metadata.labels?.[STATE] === "upgrade-failed" ? true : undefined), { timeoutMs: 120_000 });
    assert.ok(failed);
    const seen = await sample.stop();
    assert.equal(seen.maxWithoutDriver, 0, "the guarded node kept its driver throughout");
    const guardedDriver = (await driverPods(client)).find((p) => p.spec?.nodeName === "pdb-b")!;
    assert.equal(image(guardedDriver), "nvcr.io/nvidia/driver:550.54.15-ubuntu22.04");
    assert.equal((await runningPodOf("guarded", "pdb-b")).status?.phase, "Running");
    const event = (await nodeEvents("pdb-b")).find((e) => e.reason === "DriverUpgradeFailed");
    assert.match(event?.message ?? "", /PodDisruptionBudget.*upgrade-jobs\/guarded-/);
    const policy = await eventually("failed in status", async () => {
      const p = await getPolicy(client);
      return p.status?.upgrades?.failed.length === 1 ? p : undefined;
    });
    assert.equal(policy.status?.upgrades?.failed[0]?.node, "pdb-b");
    assert.equal(policy.status?.conditions?.find((c) => c.type === "Ready")?.reason, "DriverUpgradeFailed");
    // gpuop status shows what runs, what is wanted, and the upgrade state.
    const status = (await promisify(execFile)(join(repoRoot, "bin", "gpuop"), ["status"], { env: { ...process.env, KUBECONFIG: cluster.kubeconfig } })).stdout;
    assert.match(status, /^pdb-b\s.*\snvcr\.io\/nvidia\/driver:550\.54\.15-ubuntu22\.04\s+nvcr\.io\/nvidia\/driver:550\.90\.07-ubuntu22\.04\s+upgrade-failed\s/m);
    assert.match(status, /^pdb-a\s.*\snvcr\.io\/nvidia\/driver:550\.90\.07-ubuntu22\.04\s+=\s+upgrade-done\s/m);
    assert.match(status, /failed: pdb-b: .*PodDisruptionBudget/);
    // The README's retry: remove the cause, set the label back.
    await client.delete(`/apis/policy/v1/namespaces/${WORK_NS}/poddisruptionbudgets/guarded`);
    await cluster.kubectl(["label", "node", "pdb-b", `${STATE}=upgrade-required`, "--overwrite"]);
    await waitAllDone(names, () => "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");
    assert.equal((await getNode("pdb-b")).spec?.unschedulable ?? false, false);
  });

  test("waitForCompletion holds a node while a matching job pod runs, forever with timeoutSeconds 0", async () => {
    const names = ["wait-a", "wait-b"];
    await setup(names.map((name) => ({ name, kernel: "5.15.0-69-generic" })), {
      version: "550.54.15",
      upgradePolicy: { maxParallelUpgrades: 0, maxUnavailable: "100%", waitForCompletion: { podSelector: "job-kind=training" } },
    });
    // A job's pod. kwok completes the pods of a real Job at once, so this one carries a Job's
    // labels without its owner; kwok keeps it Running until the test says it finished.
    const job = await client.create<Pod>(`/api/v1/namespaces/${WORK_NS}/pods`, {
      metadata: { name: "training-x7k2p", labels: { "job-kind": "training", "batch.kubernetes.io/job-name": "training" } },
      spec: { restartPolicy: "Never", nodeSelector: { "kubernetes.io/hostname": "wait-b" }, containers: [{ name: "t", image: "registry.invalid/train:1" }] },
    });
    await eventually("job pod running", async () => ((await client.get<Pod>(`/api/v1/namespaces/${WORK_NS}/pods/${job.metadata.name}`)).status?.phase === "Running" ? true : undefined));
    await patchDriver({ version: "550.90.07" });
    await waitAllDone(["wait-a"], () => "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");
    assert.equal((await getNode("wait-b")).metadata.labels?.[STATE], "wait-for-jobs-required");
    const stillRunning = await client.get<Pod>(`/api/v1/namespaces/${WORK_NS}/pods/${job.metadata.name}`);
    assert.equal(stillRunning.status?.phase, "Running");
    await client.mergePatch(`/api/v1/namespaces/${WORK_NS}/pods/${job.metadata.name}/status`, { status: { phase: "Succeeded" } });
    await waitAllDone(names, () => "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");
  });

  test("autoUpgrade false replaces nothing and lists the outdated nodes; turning it on upgrades them", async () => {
    const names = ["auto-a", "auto-b"];
    const before = await (async () => {
      await setup(names.map((name) => ({ name, kernel: "5.15.0-69-generic" })), { version: "550.54.15", upgradePolicy: { autoUpgrade: false, maxParallelUpgrades: 0 } });
      return new Set((await driverPods(client)).map((p) => p.metadata.uid));
    })();
    await patchDriver({ version: "550.90.07" });
    const policy = await eventually("outdated listed", async () => {
      const p = await getPolicy(client);
      return p.status?.observedGeneration === p.metadata.generation && p.status?.upgrades?.outdated.length === 2 ? p : undefined;
    });
    assert.deepEqual(policy.status?.upgrades?.outdated, names);
    assert.deepEqual(new Set((await driverPods(client)).map((p) => p.metadata.uid)), before);
    await patchDriver({ upgradePolicy: { autoUpgrade: true } });
    await waitAllDone(names, () => "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");
  });
});

describe("maxParallelUpgrades 1 and an operator killed mid-upgrade", () => {
  after(cleanup);

  test("one node at a time; a restarted operator resumes from the labels and does not redo a finished node", async () => {
    const names = ["par-a", "par-b", "par-c"];
    await setup(names.map((name) => ({ name, kernel: "5.15.0-69-generic" })), { version: "550.54.15", upgradePolicy: { maxParallelUpgrades: 1, maxUnavailable: "100%" } });
    const sample = sampler(names);
    await patchDriver({ version: "550.90.07" });
    const first = await eventually("par-a done, par-b started", async () => {
      const [a, b] = await Promise.all([getNode("par-a"), getNode("par-b")]);
      if (a.metadata.labels?.[STATE] !== "upgrade-done" || !IN_PROGRESS.has(b.metadata.labels?.[STATE] ?? "")) return undefined;
      return (await driverPods(client)).find((p) => p.spec?.nodeName === "par-a" && ready(p));
    }, { timeoutMs: 180_000, intervalMs: 100 });
    assert.equal(image(first!), "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");
    await operator!.stop("SIGKILL");
    operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
    const pods = await waitAllDone(names, () => "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");
    const seen = await sample.stop();
    assert.equal(pods.get("par-a")!.metadata.uid, first!.metadata.uid, "par-a's new driver pod was not restarted again");
    assert.equal(seen.maxInProgress, 1);
    assert.ok(seen.maxWithoutDriver <= 1);
  });
});

describe("precompiled", () => {
  afterEach(cleanup);

  test("a branch change keeps the pool names and replaces every node's driver", async () => {
    const names = ["pre-a", "pre-b"];
    await setup([{ name: "pre-a", kernel: "5.15.0-69-generic" }, { name: "pre-b", kernel: "5.15.0-70-generic" }], { usePrecompiled: true, version: "525", upgradePolicy: { maxParallelUpgrades: 0, maxUnavailable: "100%" } });
    const pools = (await driverPods(client)).map((p) => p.metadata.labels?.["gpuop.nvidia.com/driver-pool"]).sort();
    await patchDriver({ version: "535" });
    const kernel = (n: string) => (n === "pre-a" ? "5.15.0-69-generic" : "5.15.0-70-generic");
    const pods = await waitAllDone(names, (n) => `nvcr.io/nvidia/driver:535-${kernel(n)}-ubuntu22.04`);
    assert.deepEqual([...pods.values()].map((p) => p.metadata.labels?.["gpuop.nvidia.com/driver-pool"]).sort(), pools);
  });

  test("a mode switch cordons and evicts before a node changes pool: a node whose GPU pod may not be evicted keeps its driver", async () => {
    const names = ["sw-a", "sw-b"];
    await setup(names.map((name) => ({ name, kernel: "5.15.0-69-generic" })), { version: "550.54.15", upgradePolicy: { maxParallelUpgrades: 0, maxUnavailable: "100%", podDeletion: { timeoutSeconds: 5 } } });
    await gpuWorkload("held", "sw-b");
    await runningPodOf("held", "sw-b");
    await client.create(`/apis/policy/v1/namespaces/${WORK_NS}/poddisruptionbudgets`, { metadata: { name: "held" }, spec: { maxUnavailable: 0, selector: { matchLabels: { app: "held" } } } });
    await eventually("PDB observed", async () => ((await client.get<{ status?: { currentHealthy?: number } }>(`/apis/policy/v1/namespaces/${WORK_NS}/poddisruptionbudgets/held`)).status?.currentHealthy === 1 ? true : undefined));
    await patchDriver({ usePrecompiled: true, version: "550" });
    await waitAllDone(["sw-a"], () => "nvcr.io/nvidia/driver:550-5.15.0-69-generic-ubuntu22.04");
    await eventually("sw-b failed", async () => ((await getNode("sw-b")).metadata.labels?.[STATE] === "upgrade-failed" ? true : undefined), { timeoutMs: 120_000 });
    const b = await getNode("sw-b");
    assert.equal(b.metadata.labels?.["gpuop.nvidia.com/driver-pool"], "nvidia-driver-daemonset-ubuntu22.04", "sw-b kept its conventional pool");
    const driver = (await driverPods(client)).find((p) => p.spec?.nodeName === "sw-b");
    assert.ok(driver && ready(driver) && image(driver) === "nvcr.io/nvidia/driver:550.54.15-ubuntu22.04", "sw-b kept its Ready driver");
  });
});
