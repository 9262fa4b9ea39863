// GPU nodes that come and go: 100 nodes added and deleted at random while the
// cluster switches to precompiled drivers, and while it upgrades them (a new
// branch, with GPU jobs evicted). The end state must be exact: one driver pod
// on each node that is left, no DaemonSet for a kernel whose nodes are all
// gone, and no node ever running two driver pods; the upgrade finishes on every
// node that stayed, each step once.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { assertConverged, clearFleet, freshFleet, isPrecompiledPod, NS, toPrecompiled, watchPlacement } from "./harness/faults.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { driverDaemonSets, ensureNamespace, examplePolicy, installCrd, waitForDriverPods, waitForState } from "./harness/policy.ts";
import { assertUpgradeFinished, bumpVersion, targetImage, upgradeFleet, watchUpgrade, WORK_NS } from "./harness/upgrade-faults.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { DaemonSet } from "../src/kube/types.ts";

let cluster: LocalCluster;
let client: KubeClient;
let operator: OperatorProcess | undefined;
let stable: string[] = [];
const churned = new Set<string>();
const CHURN = 100;
// Nodes on this kernel are all deleted again: its DaemonSet must not outlive them.
const DOOMED_KERNEL = "5.15.0-71-generic";
const KERNELS = ["5.15.0-69-generic", "5.15.0-70-generic", DOOMED_KERNEL];

/** A small seeded generator, so a failing run can be repeated with GPUOP_CHURN_SEED. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  stable = await freshFleet(cluster, client, [], "churn-stable", 8, examplePolicy);
  operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
});

after(async () => {
  await operator?.stop();
  await clearFleet(client, [...stable, ...churned]).catch(() => undefined);
  await cluster.kubectl(["delete", "namespace", WORK_NS, "--ignore-not-found", "--wait=false"]).catch(() => undefined);
  await client.close();
});

/** Adds CHURN nodes `<prefix>-NNN` in batches of 5 and deletes about as many at random; returns the survivors, none on DOOMED_KERNEL. */
async function churn(random: () => number, prefix: string): Promise<{ name: string; kernel: string }[]> {
  const alive: { name: string; kernel: string }[] = [];
  for (let batch = 0; batch < CHURN; batch += 5) {
    const created = Array.from({ length: 5 }, (_, i) => ({ name: `${prefix}-${String(batch + i).padStart(3, "0")}`, kernel: KERNELS[Math.floor(random() * KERNELS.length)]! }));
    await Promise.all(created.map((n) => createGpuNode(client, n)));
    for (const n of created) churned.add(n.name);
    alive.push(...created);
    // Delete about as many as were added, some just created, some older.
    const doomed: string[] = [];
    for (let i = 0; i < 5 && alive.length > 0; i++) {
      if (random() < 0.45) doomed.push(...alive.splice(Math.floor(random() * alive.length), 1).map((n) => n.name));
    }
    await deleteNodes(client, doomed);
  }
  const lastOfKernel = alive.filter((n) => n.kernel === DOOMED_KERNEL).map((n) => n.name);
  await deleteNodes(client, lastOfKernel);
  return alive.filter((n) => n.kernel !== DOOMED_KERNEL);
}

function seeded(): () => number {
  const seed = Number(process.env.GPUOP_CHURN_SEED ?? Date.now() % 100000);
  console.log(`# node churn seed ${seed}`);
  return prng(seed);
}

test(`${CHURN} GPU nodes added and deleted at random during a mode switch leave an exact end state`, async () => {
  await waitForDriverPods(client, stable.length);
  await waitForState(client, "ready");
  const random = seeded();
  const placement = await watchPlacement(client);
  try {
    await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${toPrecompiled}`]);
    const survivors = [...stable, ...(await churn(random, "churn")).map((n) => n.name)];
    console.log(`# ${CHURN} nodes added, ${CHURN - survivors.length + stable.length} deleted, ${survivors.length} GPU nodes left`);

    await assertConverged(client, survivors, isPrecompiledPod, 300_000);
    const sets = (await driverDaemonSets(client)).map((d) => d.metadata.name!);
    assert.ok(!sets.some((s) => s.includes(DOOMED_KERNEL)), `no DaemonSet for a kernel no node runs: ${sets.join(", ")}`);
    assert.deepEqual(placement.unsteady(), [], "each node went from its old pool to its new one once");
    placement.assertNoOverlap();
    assert.equal(operator!.proc.exitCode, null, "the operator is still running");
  } finally {
    await placement.stop();
  }
});

test(`${CHURN} GPU nodes added and deleted at random during a driver upgrade: the upgrade finishes on every node that stayed, and the end state is exact`, async () => {
  const parallel = 4;
  const workloads = 6;
  const random = seeded();
  stable = await upgradeFleet(cluster, client, [...stable, ...churned], "churn-upg", 20, { workloads, maxParallel: parallel, maxUnavailable: parallel, precompiled: true });
  churned.clear();
  const w = await watchUpgrade(client, new Set(stable));
  try {
    await bumpVersion(cluster, true);
    const alive = await churn(random, "churn-upg-x");
    const survivors = [...stable, ...alive.map((n) => n.name)];
    console.log(`# ${CHURN} nodes added during the upgrade, ${CHURN - alive.length} deleted, ${survivors.length} GPU nodes left`);
    await assertUpgradeFinished(client, w, stable, { maxUnavailable: parallel, workloads: stable.slice(0, workloads).map((n) => `job-${n}`), cordoned: [stable.at(-1)!], image: targetImage(true) });
    await assertConverged(client, survivors, isPrecompiledPod, 300_000);
    const kernelOf = new Map(alive.map((n) => [n.name, n.kernel]));
    const imageOf = (d: DaemonSet) => (d.spec?.template as { spec?: { containers?: { image?: string }[] } } | undefined)?.spec?.containers?.[0]?.image ?? "";
    const wrong = (await driverDaemonSets(client)).flatMap((d) => (imageOf(d).includes(":535-") ? [] : [d.metadata.name!]));
    assert.deepEqual(wrong, [], "every DaemonSet runs the new branch");
    const pods = (await waitForDriverPods(client, survivors.length, isPrecompiledPod)).filter((p) => kernelOf.has(p.spec?.nodeName ?? ""));
    assert.deepEqual(pods.filter((p) => p.spec?.containers?.[0]?.image !== targetImage(true, kernelOf.get(p.spec!.nodeName!))).map((p) => p.spec?.nodeName), [], "every node added during the upgrade runs the new branch");
    const sets = (await driverDaemonSets(client)).map((d) => d.metadata.name!);
    assert.ok(!sets.some((s) => s.includes(DOOMED_KERNEL)), `no DaemonSet for a kernel no node runs: ${sets.join(", ")}`);
    assert.equal(operator!.proc.exitCode, null, "the operator is still running");
  } finally {
    await w.stop();
  }
});
