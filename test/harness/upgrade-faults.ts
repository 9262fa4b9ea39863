// A driver upgrade under a fault: a fleet on one conventional version with GPU
// workloads on some nodes and one node cordoned by its admin, a version bump,
// and watches that record what the promises are about while the fault plays
// out: each node's upgrade-state history, the most nodes at once in an upgrade
// step or without a Ready driver, every GPU workload pod ever seen, and (from
// watchPlacement) the most driver pods on a node at once.
import assert from "node:assert/strict";
import type { LocalCluster } from "./cluster.ts";
import { clearFleet, KERNEL, NS, watchPlacement } from "./faults.ts";
import { createGpuNode } from "./nodes.ts";
import { driverPods, ensureNamespace } from "./policy.ts";
import { eventually } from "./wait.ts";
import type { KubeClient } from "../../src/kube/client.ts";
import { Informer } from "../../src/kube/informer.ts";
import { silentLogger } from "../../src/kube/log.ts";
import type { Node, Pod } from "../../src/kube/types.ts";

export const WORK_NS = "upgrade-fault-jobs";
export const STATE = "nvidia.com/gpu-driver-upgrade-state";
/** The versions of a bump: conventional, or a precompiled branch (one pool per kernel). */
const versions = (precompiled: boolean) => (precompiled ? { from: "525", to: "535" } : { from: "550.54.15", to: "550.90.07" });
/** The image a node on `kernel` runs once the bump is done. */
export const targetImage = (precompiled: boolean, kernel = KERNEL) => (precompiled ? `nvcr.io/nvidia/driver:535-${kernel}-ubuntu22.04` : "nvcr.io/nvidia/driver:550.90.07-ubuntu22.04");
const IN_PROGRESS = new Set(["cordon-required", "wait-for-jobs-required", "pod-deletion-required", "drain-required", "pod-restart-required", "validation-required", "uncordon-required"]);

/** The upgrade policy of these tests: several nodes at once, so 20-40 nodes take seconds, not minutes. */
export function upgradePolicy(maxParallel: number, maxUnavailable: number, precompiled = false): string {
  return JSON.stringify({
    apiVersion: "nvidia.com/v1",
    kind: "ClusterPolicy",
    metadata: { name: "cluster-policy" },
    spec: { driver: { repository: "nvcr.io/nvidia", usePrecompiled: precompiled, version: versions(precompiled).from, upgradePolicy: { maxParallelUpgrades: maxParallel, maxUnavailable, podDeletion: { timeoutSeconds: 0 } } } },
  });
}

export const bumpVersion = (cluster: LocalCluster, precompiled = false) => cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=merge", `-p={"spec":{"driver":{"version":"${versions(precompiled).to}"}}}`]);

const ready = (p: Pod) => !p.metadata.deletionTimestamp && p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;

/**
 * `count` GPU nodes `<prefix>-NN` on the old version, all upgrade-done with a Ready driver; a GPU
 * Deployment pinned to each of the first `workloads` nodes, Running; the last node cordoned by
 * its admin. Returns the node names.
 */
export async function upgradeFleet(cluster: LocalCluster, client: KubeClient, old: readonly string[], prefix: string, count: number, opts: { workloads: number; maxParallel: number; maxUnavailable: number; precompiled?: boolean }): Promise<string[]> {
  await clearFleet(client, old);
  await cluster.kubectl(["delete", "namespace", WORK_NS, "--ignore-not-found", "--wait=true", "--timeout=120s"]);
  await ensureNamespace(client, WORK_NS);
  const names = Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}`);
  await Promise.all(names.map((name) => createGpuNode(client, { name, kernel: KERNEL })));
  await cluster.kubectl(["apply", "-f", "-"], { input: upgradePolicy(opts.maxParallel, opts.maxUnavailable, opts.precompiled) });
  await eventually("every node upgrade-done with a Ready driver", async () => {
    const pods = (await driverPods(client)).filter(ready);
    const nodes = (await client.list<Node>("/api/v1/nodes")).items.filter((n) => names.includes(n.metadata.name!));
    return nodes.length === count && nodes.every((n) => n.metadata.labels?.[STATE] === "upgrade-done") && pods.length === count ? true : undefined;
  }, { timeoutMs: 180_000, intervalMs: 500 });
  for (const node of names.slice(0, opts.workloads)) {
    await client.create(`/apis/apps/v1/namespaces/${WORK_NS}/deployments`, {
      metadata: { name: `job-${node}` },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: `job-${node}` } },
        template: {
          metadata: { labels: { app: `job-${node}` } },
          spec: {
            nodeSelector: { "kubernetes.io/hostname": node },
            containers: [{ name: "train", image: "registry.invalid/train:1", resources: { limits: { "nvidia.com/gpu": "1" } } }],
          },
        },
      },
    });
  }
  await eventually("GPU workloads running", async () => {
    const { items } = await client.list<Pod>(`/api/v1/namespaces/${WORK_NS}/pods`);
    return items.filter((p) => p.status?.phase === "Running" && !p.metadata.deletionTimestamp).length === opts.workloads ? true : undefined;
  }, { timeoutMs: 120_000 });
  await cluster.kubectl(["cordon", names.at(-1)!]);
  return names;
}

/**
 * Watches a driver upgrade of `tracked` nodes. Two streams, each consistent in itself: nodes
 * (upgrade-state history, nodes in a step at once, cordons) and pods (driver pods: nodes without
 * a Ready one at once, and two at once on a node; GPU workload pods: each one ever seen).
 */
export async function watchUpgrade(client: KubeClient, tracked: ReadonlySet<string>) {
  const stop = new AbortController();
  const placement = await watchPlacement(client);
  // Back within a second of a control plane's return: a watcher still waiting out the operator's
  // 30-second backoff misses the steps the operator takes meanwhile.
  const prompt = { maxBackoffMs: 1000 };
  const nodes = new Informer<Node>(client, "/api/v1/nodes", {}, silentLogger, prompt);
  const drivers = new Informer<Pod>(client, `/api/v1/namespaces/${NS}/pods`, { labelSelector: "app=nvidia-driver-daemonset" }, silentLogger, prompt);
  const work = new Informer<Pod>(client, `/api/v1/namespaces/${WORK_NS}/pods`, {}, silentLogger, prompt);
  const history = new Map<string, string[]>();
  const workloadPods = new Map<string, Set<string>>();
  let maxInProgress = 0;
  let maxWithoutDriver = 0;
  nodes.onChange((type, node) => {
    const name = node.metadata.name!;
    if (type !== "deleted" && tracked.has(name)) {
      const state = node.metadata.labels?.[STATE] ?? "";
      const seen = history.get(name) ?? [];
      if (seen.at(-1) !== state) history.set(name, [...seen, state]);
    }
    maxInProgress = Math.max(maxInProgress, nodes.list().filter((n) => tracked.has(n.metadata.name!) && IN_PROGRESS.has(n.metadata.labels?.[STATE] ?? "")).length);
  });
  drivers.onChange(() => {
    const withDriver = new Set(drivers.list().filter(ready).map((p) => p.spec?.nodeName));
    maxWithoutDriver = Math.max(maxWithoutDriver, [...tracked].filter((n) => !withDriver.has(n)).length);
  });
  work.onChange((type, pod) => {
    if (type === "deleted") return;
    const app = pod.metadata.labels?.app ?? "";
    workloadPods.set(app, (workloadPods.get(app) ?? new Set()).add(pod.metadata.uid!));
  });
  const running = [nodes.run(stop.signal), drivers.run(stop.signal), work.run(stop.signal)];
  await Promise.all([nodes.synced, drivers.synced, work.synced]);
  // Start from a fleet at rest: the baseline of the maxima is what the fault changes.
  maxInProgress = 0;
  maxWithoutDriver = 0;
  return {
    placement,
    history,
    get maxInProgress() {
      return maxInProgress;
    },
    get maxWithoutDriver() {
      return maxWithoutDriver;
    },
    workloadPods,
    async stop() {
      stop.abort();
      await Promise.all(running);
      await placement.stop();
    },
  };
}

/**
 * The promises of an upgrade under a fault, once it has finished: every node upgrade-done on the
 * new version with one Ready driver pod; none left cordoned but the one cordoned before; each node
 * walked the steps once (no state entered twice, nothing after upgrade-done); each GPU workload
 * evicted once, not again; never more nodes in a step, or without a Ready driver, than
 * maxUnavailable; never two driver pods on a node.
 */
export async function assertUpgradeFinished(client: KubeClient, w: Awaited<ReturnType<typeof watchUpgrade>>, names: readonly string[], opts: { maxUnavailable: number; workloads: readonly string[]; cordoned: readonly string[]; image: string; timeoutMs?: number }): Promise<void> {
  await eventually("every node upgraded", async () => {
    const pods = await driverPods(client);
    const nodes = new Map((await client.list<Node>("/api/v1/nodes")).items.map((n) => [n.metadata.name!, n]));
    const behind = names.filter((name) => {
      const mine = pods.filter((p) => p.spec?.nodeName === name);
      return nodes.get(name)?.metadata.labels?.[STATE] !== "upgrade-done" || mine.length !== 1 || !ready(mine[0]!) || mine[0]!.spec?.containers?.[0]?.image !== opts.image;
    });
    if (behind.length > 0) throw new Error(`not upgraded yet: ${behind.slice(0, 5).join(", ")}${behind.length > 5 ? ` and ${behind.length - 5} more` : ""}`);
    return true;
  }, { timeoutMs: opts.timeoutMs ?? 300_000, intervalMs: 500 });
  const nodes = new Map((await client.list<Node>("/api/v1/nodes")).items.map((n) => [n.metadata.name!, n]));
  // The watch that keeps the history may still be reconnecting after an outage: wait until it has
  // seen each node's last state before reading the history.
  await eventually("the watch caught up", async () => {
    const lagging = names.filter((n) => w.history.get(n)?.at(-1) !== nodes.get(n)?.metadata.labels?.[STATE]);
    if (lagging.length > 0) throw new Error(`the watch has not seen the last state of ${lagging.join(", ")}`);
    return true;
  }, { timeoutMs: 60_000, intervalMs: 200 });
  const cordoned = names.filter((n) => nodes.get(n)?.spec?.unschedulable === true);
  assert.deepEqual(cordoned, [...opts.cordoned], "no node left cordoned but the one its admin cordoned before the upgrade");
  const marked = names.filter((n) => nodes.get(n)?.metadata.annotations?.["gpuop.nvidia.com/upgrade-cordoned"] !== undefined);
  assert.deepEqual(marked, [], "no upgrade-cordoned mark left");
  const repeated = names.flatMap((n) => {
    const h = w.history.get(n) ?? [];
    // From the version bump: upgrade-done, then the steps once each, ending upgrade-done.
    const steps = h.slice(1, -1);
    return new Set(steps).size !== steps.length || h.at(-1) !== "upgrade-done" || steps.includes("upgrade-done") || steps.includes("upgrade-failed") ? [`${n}: ${h.join(" -> ")}`] : [];
  });
  assert.deepEqual(repeated, [], "each node walked the upgrade steps once, and none after upgrade-done");
  // Steps with nothing to do are passed in one write (cordon-required is never written now), but
  // every node stops in the restart step until its old driver pod is gone (docs/adr/0005).
  const walked = names.filter((n) => (w.history.get(n) ?? []).includes("pod-restart-required")).length;
  assert.equal(walked, names.length, "every node went through the steps");
  // Each GPU workload's pod was evicted once (its Deployment made one new pod), never twice.
  const evictions = opts.workloads.map((app) => `${app}: ${(w.workloadPods.get(app)?.size ?? 0) - 1}`);
  assert.deepEqual(evictions, opts.workloads.map((app) => `${app}: 1`), "each GPU workload was evicted exactly once");
  console.log(`# most nodes at once in an upgrade step: ${w.maxInProgress}, without a Ready driver: ${w.maxWithoutDriver} (maxUnavailable ${opts.maxUnavailable})`);
  assert.ok(w.maxInProgress <= opts.maxUnavailable, `${w.maxInProgress} nodes at once in an upgrade step; maxUnavailable ${opts.maxUnavailable}`);
  assert.ok(w.maxWithoutDriver <= opts.maxUnavailable, `${w.maxWithoutDriver} nodes at once without a Ready driver; maxUnavailable ${opts.maxUnavailable}`);
  assert.ok(w.maxWithoutDriver >= 1, "the watch saw nodes without their driver");
  w.placement.assertNoOverlap();
}
