// The control plane restarted under a running operator: kube-apiserver stopped
// for 20 s in the middle of a mode switch or a driver upgrade (cordons,
// evictions), then started again on the same etcd; etcd itself stopped and
// started. The operator must come back on its own (reconnect, relist or resume
// its watches) and finish, with no node ever running two driver pods, none left
// cordoned, and no step repeated. It stops and starts cluster processes, so it runs
// in a cluster of its own, on ports that kwokctl's own choice (counting down
// from 32765, where other clusters on the machine take theirs) never picks:
// a port freed by a stopped process is then still free to restart on.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startCluster, stopCluster, type LocalCluster } from "./harness/cluster.ts";
import { assertStaysUp, restartExited, startComponent, stopComponent, type Component } from "./harness/control-plane.ts";
import { assertConverged, freshFleet, isConventionalPod, isPrecompiledPod, NS, toConventional, toPrecompiled, watchPlacement } from "./harness/faults.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { assertUpgradeFinished, bumpVersion, targetImage, upgradeFleet, watchUpgrade } from "./harness/upgrade-faults.ts";
import { freePort } from "./harness/registry.ts";
import { driverPods, ensureNamespace, installCrd, waitForDriverPods, waitForState } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";

let cluster: LocalCluster;
let client: KubeClient;
let nodeNames: string[] = [];
const others: Component[] = ["kube-controller-manager", "kube-scheduler", "kwok-controller"];
// Its own cluster; GPUOP_RESTART_CLUSTER names it where several checkouts share a machine.
const RESTART_CLUSTER = process.env.GPUOP_RESTART_CLUSTER ?? "gpuop-restart";
const OUTAGE_MS = 20_000;
const ETCD_OUTAGE_MS = 10_000;
// The upgrade tests: enough nodes for several waves of maxParallelUpgrades, so a fault lands mid-upgrade.
const UPGRADE_NODES = 20;
const PARALLEL = 4;
const WORKLOADS = 8;

/** Runs a leader-elected operator as a Deployment would: a replica that exits is started again. */
async function supervisedOperator(lease: string) {
  const args = ["--no-image-check", "--lease-name", lease];
  let operator: OperatorProcess = await startOperator({ kubeconfig: cluster.kubeconfig, args });
  const exits: (number | null)[] = [];
  let supervising = true;
  const supervisor = (async () => {
    while (supervising) {
      if (operator.proc.exitCode !== null) {
        exits.push(operator.proc.exitCode);
        operator = await startOperator({ kubeconfig: cluster.kubeconfig, args });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    exits,
    async stop() {
      supervising = false;
      await supervisor;
      await operator.stop();
    },
  };
}

/** Resolves once some node finished its upgrade while others still wait or are in a step: the middle of the upgrade. */
async function midUpgrade(w: Awaited<ReturnType<typeof watchUpgrade>>): Promise<void> {
  await eventually("the upgrade is under way", async () => {
    const done = nodeNames.filter((n) => (w.history.get(n) ?? []).slice(1).includes("upgrade-done")).length;
    return done >= 1 && done <= nodeNames.length - 2 * PARALLEL ? true : undefined;
  }, { intervalMs: 20, timeoutMs: 120_000 });
}

/** Waits until the API server answers again and every other component runs (restarting any that exited, as a kubelet would). */
async function controlPlaneBack(): Promise<void> {
  await eventually("the API server answers", async () => ((await client.list("/api/v1/namespaces")).items.length > 0 ? true : undefined), { timeoutMs: 120_000 });
  const restarted = restartExited(cluster.name, others);
  if (restarted.length > 0) console.log(`# restarted after the outage: ${restarted.join(", ")}`);
  for (const c of restarted) await assertStaysUp(cluster.name, c);
}

before(async () => {
  const port = async (flag: string) => [flag, String(await freePort())];
  cluster = await startCluster(RESTART_CLUSTER, [
    ...(await port("--kube-apiserver-port")),
    ...(await port("--etcd-port")),
    ...(await port("--kube-controller-manager-port")),
    ...(await port("--kube-scheduler-port")),
    ...(await port("--controller-port")),
  ]);
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  nodeNames = await freshFleet(cluster, client, [], "restart", 8);
});

after(async () => {
  await client?.close();
  await stopCluster(RESTART_CLUSTER);
});

describe("kube-apiserver and etcd restarts", () => {
  test("kube-apiserver stopped for 20 s during a mode switch: the same operator process reconnects and finishes", async () => {
    // Without leader election the process must ride the outage out itself (with it, it would
    // exit on the lost lease and be restarted: see the etcd test).
    const operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
    const placement = await watchPlacement(client);
    try {
      await waitForDriverPods(client, nodeNames.length);
      await waitForState(client, "ready");
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${toPrecompiled}`]);
      await eventually("the switch has started", async () => ((await driverPods(client)).some(isPrecompiledPod) ? true : undefined), { intervalMs: 50 });
      await stopComponent(cluster.name, "kube-apiserver");
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      startComponent(cluster.name, "kube-apiserver");
      await assertStaysUp(cluster.name, "kube-apiserver");
      await controlPlaneBack();
      await assertConverged(client, nodeNames, isPrecompiledPod, 240_000);
      assert.equal(operator.proc.exitCode, null, `the operator rode the outage out:\n${operator.logs().slice(-2000)}`);
      assert.match(operator.logs(), /watch failed; retrying|reconcile failed; retrying/, "the operator saw the outage");
      assert.deepEqual(placement.unsteady(), [], "each node went from its old pool to its new one once");
      placement.assertNoOverlap();
    } finally {
      await placement.stop();
      await operator.stop();
    }
  });

  test("etcd stopped for 10 s under a leader-elected operator: it steps down, a restarted replica takes over, and the switch finishes", async () => {
    // As in a Deployment: a replica that exits is started again.
    let operator = await startOperator({ kubeconfig: cluster.kubeconfig, args: ["--no-image-check", "--lease-name", "faults-etcd"] });
    const exits: (number | null)[] = [];
    let supervising = true;
    const supervisor = (async () => {
      while (supervising) {
        if (operator.proc.exitCode !== null) {
          exits.push(operator.proc.exitCode);
          operator = await startOperator({ kubeconfig: cluster.kubeconfig, args: ["--no-image-check", "--lease-name", "faults-etcd"] });
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const placement = await watchPlacement(client);
    try {
      await waitForDriverPods(client, nodeNames.length);
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${toConventional}`]);
      await eventually("the switch has started", async () => ((await driverPods(client)).some(isConventionalPod) ? true : undefined), { intervalMs: 50 });
      await stopComponent(cluster.name, "etcd");
      await new Promise((r) => setTimeout(r, ETCD_OUTAGE_MS));
      startComponent(cluster.name, "etcd");
      await assertStaysUp(cluster.name, "etcd");
      await controlPlaneBack();
      await assertConverged(client, nodeNames, isConventionalPod, 240_000);
      assert.ok(exits.every((c) => c !== 0), `a replica that stepped down exited non-zero: ${exits.join(", ")}`);
      console.log(`# operator exits during the etcd outage: ${exits.length} (${exits.join(", ")})`);
      assert.deepEqual(placement.unsteady(), [], "each node went from its old pool to its new one once");
      placement.assertNoOverlap();
    } finally {
      supervising = false;
      await supervisor;
      await placement.stop();
      await operator.stop();
    }
  });
  test("kube-apiserver stopped for 20 s in the middle of a driver upgrade with GPU jobs: the operator finishes it, each step once", async () => {
    const operator = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
    try {
      await upgradeThroughOutage("upg-api", "kube-apiserver", OUTAGE_MS);
      assert.equal(operator.proc.exitCode, null, `the operator rode the outage out:\n${operator.logs().slice(-2000)}`);
      assert.match(operator.logs(), /watch failed; retrying|reconcile failed; retrying/, "the operator saw the outage");
    } finally {
      await operator.stop();
    }
  });

  test("etcd stopped for 10 s in the middle of a driver upgrade with GPU jobs: a restarted replica finishes it, each step once", async () => {
    const operator = await supervisedOperator("faults-etcd-upgrade");
    try {
      await upgradeThroughOutage("upg-etcd", "etcd", ETCD_OUTAGE_MS);
      assert.ok(operator.exits.every((c) => c !== 0), `a replica that stepped down exited non-zero: ${operator.exits.join(", ")}`);
      console.log(`# operator exits during the etcd outage: ${operator.exits.length} (${operator.exits.join(", ")})`);
    } finally {
      await operator.stop();
    }
  });
});

/**
 * A driver upgrade of a fresh fleet with GPU jobs, `component` stopped for `ms` in its middle;
 * returns once the upgrade finished with every promise of upgrade-faults.ts checked.
 */
async function upgradeThroughOutage(prefix: string, component: "kube-apiserver" | "etcd", ms: number): Promise<void> {
  nodeNames = await upgradeFleet(cluster, client, nodeNames, prefix, UPGRADE_NODES, { workloads: WORKLOADS, maxParallel: PARALLEL, maxUnavailable: PARALLEL });
  const w = await watchUpgrade(client, new Set(nodeNames));
  try {
    await bumpVersion(cluster);
    await midUpgrade(w);
    await stopComponent(cluster.name, component);
    await new Promise((r) => setTimeout(r, ms));
    startComponent(cluster.name, component);
    await assertStaysUp(cluster.name, component);
    await controlPlaneBack();
    await assertUpgradeFinished(client, w, nodeNames, { maxUnavailable: PARALLEL, workloads: nodeNames.slice(0, WORKLOADS).map((n) => `job-${n}`), cordoned: [nodeNames.at(-1)!], image: targetImage(false) });
  } finally {
    await w.stop();
  }
}
