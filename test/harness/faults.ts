// Helpers the fault tests share: a GPU-node fleet on one kernel, a watch that
// catches any node running two driver pods at once, and the exact end state of a switch.
import assert from "node:assert/strict";
import type { LocalCluster } from "./cluster.ts";
import { createGpuNode, deleteNodes } from "./nodes.ts";
import { deletePolicies, driverDaemonSets, driverPods, examplePolicy, waitForDriverPods, waitForState } from "./policy.ts";
import { eventually } from "./wait.ts";
import type { KubeClient } from "../../src/kube/client.ts";
import { Informer } from "../../src/kube/informer.ts";
import { silentLogger } from "../../src/kube/log.ts";
import type { Node, Pod } from "../../src/kube/types.ts";

export const NS = "gpu-operator";
export const POOL_LABEL = "gpuop.nvidia.com/driver-pool";
export const KERNEL = "5.15.0-69-generic";
/** The example policy, moving one node at a time so a switch lasts long enough to be interrupted. */
export const oneAtATime = examplePolicy.replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: IfNotPresent\n    upgradePolicy:\n      maxUnavailable: 1");
export const toPrecompiled = '[{"op":"replace","path":"/spec/driver/usePrecompiled","value":true},{"op":"replace","path":"/spec/driver/version","value":"525"}]';
export const toConventional = '[{"op":"replace","path":"/spec/driver/usePrecompiled","value":false},{"op":"replace","path":"/spec/driver/version","value":"550.54.15"}]';
export const isPrecompiledPod = (p: Pod) => /-\d+\.\d+\.\d+-/.test(p.metadata.name!);
export const isConventionalPod = (p: Pod) => !isPrecompiledPod(p);

/** Removes the policy, its pods and the given nodes. */
export async function clearFleet(client: KubeClient, nodeNames: readonly string[]): Promise<void> {
  await deletePolicies(client);
  await eventually("driver pods gone", async () => ((await driverPods(client)).length === 0 ? true : undefined), { timeoutMs: 120_000 });
  await deleteNodes(client, [...nodeNames]);
}

/** Replaces `old` nodes with `count` GPU nodes named `<prefix>-NN` on one kernel and applies `policy`; returns their names. */
export async function freshFleet(cluster: LocalCluster, client: KubeClient, old: readonly string[], prefix: string, count: number, policy = oneAtATime): Promise<string[]> {
  await clearFleet(client, old);
  const names = Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}`);
  for (const name of names) await createGpuNode(client, { name, kernel: KERNEL });
  await cluster.kubectl(["apply", "-f", "-"], { input: policy });
  return names;
}

function affinityNode(p: Pod): string | undefined {
  const spec = p.spec as { affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: { matchFields?: { values?: string[] }[] }[] } } } } | undefined;
  return spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.[0]?.matchFields?.[0]?.values?.[0];
}

/**
 * Watches driver pods and GPU nodes for the length of a test. It records each
 * node's driver-pool label history (a node must go from its old pool to its
 * new one once: never back, never twice) and, per node, the most driver pods
 * that existed on it at once: every pod counts, terminating ones included, and
 * a pod not yet bound counts for the node its affinity names. `overlaps` lists
 * each moment a node had more than one; gpuop promises none (ADR 0005).
 */
export async function watchPlacement(client: KubeClient) {
  const stop = new AbortController();
  const pods = new Informer<Pod>(client, `/api/v1/namespaces/${NS}/pods`, { labelSelector: "app=nvidia-driver-daemonset" }, silentLogger);
  const nodes = new Informer<Node>(client, "/api/v1/nodes", {}, silentLogger);
  const overlaps = new Set<string>();
  const maxPods = new Map<string, number>();
  const history = new Map<string, string[]>();
  pods.onChange(() => {
    const perNode = new Map<string, string[]>();
    for (const p of pods.list()) {
      const node = p.spec?.nodeName ?? affinityNode(p);
      if (!node) continue;
      perNode.set(node, [...(perNode.get(node) ?? []), `${p.metadata.name!}${p.metadata.deletionTimestamp ? " (terminating)" : ""}`]);
    }
    for (const [node, names] of perNode) {
      maxPods.set(node, Math.max(maxPods.get(node) ?? 0, names.length));
      if (names.length > 1) overlaps.add(`${node}: ${names.sort().join(", ")}`);
    }
  });
  nodes.onChange((type, node) => {
    if (type === "deleted") return;
    const pool = node.metadata.labels?.[POOL_LABEL];
    if (pool === undefined) return;
    const seen = history.get(node.metadata.name!) ?? [];
    if (seen.at(-1) !== pool) history.set(node.metadata.name!, [...seen, pool]);
  });
  const running = [pods.run(stop.signal), nodes.run(stop.signal)];
  await Promise.all([pods.synced, nodes.synced]);
  return {
    overlaps,
    maxPods,
    history,
    /** Asserts that no node ever had two driver pods at once, and prints the count (0). */
    assertNoOverlap(): void {
      console.log(`# nodes that had two driver pods at once: ${overlaps.size} (most driver pods on one node at once: ${Math.max(0, ...maxPods.values())})`);
      assert.deepEqual([...overlaps].slice(0, 10), [], "no node ever runs two driver pods at once");
    },
    /** Nodes whose pool label went back to a pool it had left, or changed more than `maxChanges` times. */
    unsteady(maxChanges = 1): string[] {
      return [...history].filter(([, h]) => new Set(h).size !== h.length || h.length - 1 > maxChanges).map(([n, h]) => `${n}: ${h.join(" -> ")}`);
    },
    async stop() {
      stop.abort();
      await Promise.all(running);
    },
  };
}

/**
 * The end state a fault-free switch reaches: one Running driver pod per node
 * and none elsewhere, every pod from the wanted mode, each node's pool label
 * naming a DaemonSet and every DaemonSet some node's pool, the policy ready.
 */
export async function assertConverged(client: KubeClient, nodeNames: readonly string[], match: (p: Pod) => boolean, timeoutMs = 180_000): Promise<void> {
  const pods = await waitForDriverPods(client, nodeNames.length, match, timeoutMs);
  assert.deepEqual(pods.map((p) => p.spec?.nodeName), [...nodeNames].sort());
  await waitForState(client, "ready", "cluster-policy", timeoutMs);
  await eventually("pools exact", async () => {
    const sets = (await driverDaemonSets(client)).map((d) => d.metadata.name!).sort();
    const nodes = (await client.list<Node>("/api/v1/nodes")).items;
    const pools = [...new Set(nodes.map((n) => n.metadata.labels?.[POOL_LABEL]).filter((p) => p !== undefined))].sort();
    const unlabelled = nodes.filter((n) => nodeNames.includes(n.metadata.name!) && !n.metadata.labels?.[POOL_LABEL]).map((n) => n.metadata.name);
    assert.deepEqual(unlabelled, [], "every GPU node has a pool");
    assert.deepEqual(pools, sets, "every node's pool has a DaemonSet and every DaemonSet a node");
    return true;
  }, { timeoutMs: 60_000 });
}
