// Faults of the control plane, with the operator as a separate process: a
// partition between the leader and the API server, throttling (429 with
// Retry-After), conflicts (409), and GPU nodes coming and going during a mode
// switch. Each test ends in the exact state a fault-free run reaches, and no
// node ever runs two driver pods at once. docs/reliability.md lists them.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { assertConverged, clearFleet, freshFleet, isPrecompiledPod, NS, toPrecompiled, watchPlacement } from "./harness/faults.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { driverDaemonSets, ensureNamespace, getPolicy, installCrd, waitForDriverPods, waitForState } from "./harness/policy.ts";
import { isWrite, startApiProxy, type ApiProxy } from "./harness/proxy.ts";
import { assertUpgradeFinished, bumpVersion, targetImage, upgradeFleet, watchUpgrade, WORK_NS } from "./harness/upgrade-faults.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";

let cluster: LocalCluster;
let client: KubeClient;
let nodeNames: string[] = [];
const dir = mkdtempSync(join(tmpdir(), "gpuop-faults-"));
const proxies: ApiProxy[] = [];
const operators: OperatorProcess[] = [];

async function proxy(name: string): Promise<ApiProxy> {
  const p = await startApiProxy(cluster.kubeconfig, join(dir, `${name}.kubeconfig`));
  proxies.push(p);
  return p;
}

async function operatorVia(p: ApiProxy, identity: string, lease: string): Promise<OperatorProcess> {
  const op = await startOperator({ kubeconfig: p.kubeconfig, identity, args: ["--no-image-check", "--lease-name", lease] });
  operators.push(op);
  return op;
}

async function freshCluster(prefix: string, count: number): Promise<void> {
  nodeNames = await freshFleet(cluster, client, nodeNames, prefix, count);
}

/** Two replicas sharing `lease`, each through its own proxy (`<prefix>-a`, `<prefix>-b`). */
async function twoReplicas(prefix: string, lease: string) {
  const pa = await proxy(`${prefix}-a`);
  const pb = await proxy(`${prefix}-b`);
  const a = await operatorVia(pa, `${prefix}-a`, lease);
  const b = await operatorVia(pb, `${prefix}-b`, lease);
  /** Which replica leads, once one does, with the proxy that cuts it off. */
  const roles = async () => {
    const first = await eventually("a leader", () => leaseHolder(lease));
    const [leader, standby, leaderProxy] = first === `${prefix}-a` ? [a, b, pa] : [b, a, pb];
    return { leader, standby, leaderProxy };
  };
  return { a, b, roles };
}

/** The partition has begun: the standby takes over, the partition heals, and the old leader exits non-zero. */
async function failOver(lease: string, leader: OperatorProcess, standby: OperatorProcess, leaderProxy: ApiProxy): Promise<void> {
  await eventually("the standby takes over", async () => ((await leaseHolder(lease)) === standby.identity ? true : undefined), { timeoutMs: 60_000 });
  // The partition heals: whatever the old leader still had queued would now reach the API server.
  leaderProxy.resume();
  const code = await eventually("the old leader exits", async () => (leader.proc.exitCode ?? undefined), { timeoutMs: 30_000 });
  assert.notEqual(code, 0, "an operator that lost leadership exits non-zero");
}

const leaseHolder = async (lease: string) =>
  (await client.get<{ spec: { holderIdentity?: string } }>(`/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${lease}`).catch(() => undefined))?.spec.holderIdentity || undefined;

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
});

after(async () => {
  for (const op of operators) await op.stop("SIGKILL");
  for (const p of proxies) await p.close();
  await clearFleet(client, nodeNames).catch(() => undefined);
  await cluster.kubectl(["delete", "namespace", WORK_NS, "--ignore-not-found", "--wait=false"]).catch(() => undefined);
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the leader cut off from the API server", () => {
  test("stops acting once it cannot renew, exits non-zero, and the other replica finishes the switch", async () => {
    await freshCluster("part", 6);
    const lease = "faults-partition";
    const { a, b, roles } = await twoReplicas("part", lease);
    await waitForDriverPods(client, 6);
    await waitForState(client, "ready");
    const { leader, standby, leaderProxy } = await roles();
    const placement = await watchPlacement(client);
    try {
      // Cut the leader off just as it moves a node, so it has a write in flight when the partition begins.
      leaderProxy.pauseWhen((r) => isWrite(r) && r.method === "PATCH" && r.url.startsWith("/api/v1/nodes/"));
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${toPrecompiled}`]);
      const pausedAt = await eventually("the partition begins", async () => leaderProxy.pausedAt, { timeoutMs: 60_000 });
      await failOver(lease, leader, standby, leaderProxy);
      const lost = leader.logs().split("\n").find((l) => l.includes('"lost leadership"'));
      assert.ok(lost, `the old leader logs that it lost leadership:\n${leader.logs().slice(-2000)}`);
      const lostAt = Date.parse((JSON.parse(lost) as { ts: string }).ts);
      const late = leaderProxy.requests.filter((r) => isWrite(r) && r.at >= pausedAt && r.outcome === "forwarded");
      assert.deepEqual(late.map((r) => `${r.method} ${r.url}`), [], "no write of the cut-off leader reached the API server after the partition began");
      assert.ok(leaderProxy.requests.some((r) => isWrite(r) && r.at >= pausedAt && r.outcome === "dropped"), "the leader had a write in flight, which it abandoned");
      const afterLoss = leaderProxy.requests.filter((r) => isWrite(r) && r.at > lostAt);
      assert.deepEqual(afterLoss.map((r) => `${r.method} ${r.url}`), [], "the old leader sent no write after it lost leadership");
      await assertConverged(client, nodeNames, isPrecompiledPod);
      assert.deepEqual(placement.unsteady(), [], "each node went from its old pool to its new one once");
      placement.assertNoOverlap();
    } finally {
      await placement.stop();
      await a.stop();
      await b.stop();
    }
  });
});

describe("the leader cut off from the API server in the middle of a driver upgrade", () => {
  test("it evicts, cordons and labels nothing more; the other replica finishes the upgrade, each step once", async () => {
    const lease = "faults-partition-upgrade";
    const parallel = 4;
    const workloads = 8;
    const { a, b, roles } = await twoReplicas("upg-part", lease);
    nodeNames = await upgradeFleet(cluster, client, nodeNames, "upg-part", 20, { workloads, maxParallel: parallel, maxUnavailable: parallel });
    const { leader, standby, leaderProxy } = await roles();
    const w = await watchUpgrade(client, new Set(nodeNames));
    try {
      // Cut the leader off as it evicts a GPU pod in the second wave (the first has finished or is finishing): an eviction is in flight.
      let evictions = 0;
      let trigger: (typeof leaderProxy.requests)[number] | undefined;
      leaderProxy.pauseWhen((r) => r.method === "POST" && r.url.endsWith("/eviction") && ++evictions === 6 && (trigger = r) !== undefined);
      await bumpVersion(cluster);
      const pausedAt = await eventually("the partition begins", async () => leaderProxy.pausedAt, { timeoutMs: 120_000 });
      await failOver(lease, leader, standby, leaderProxy);
      // In arrival order: a request that reached the proxy before the trigger (in the same millisecond, too) went through before the pause.
      const held = leaderProxy.requests.slice(leaderProxy.requests.indexOf(trigger!));
      assert.ok(pausedAt > 0 && held.length > 0);
      const late = held.filter((r) => isWrite(r) && r.outcome === "forwarded");
      assert.deepEqual(late.map((r) => `${r.method} ${r.url}`), [], "no eviction, cordon or label write of the cut-off leader reached the API server after the partition began");
      assert.ok(held.some((r) => r.url.endsWith("/eviction") && r.outcome === "dropped"), "the leader had an eviction in flight, which it abandoned");
      await assertUpgradeFinished(client, w, nodeNames, { maxUnavailable: parallel, workloads: nodeNames.slice(0, workloads).map((n) => `job-${n}`), cordoned: [nodeNames.at(-1)!], image: targetImage(false) });
      assert.equal(standby.proc.exitCode, null, "the new leader is still running");
    } finally {
      await w.stop();
      await a.stop();
      await b.stop();
    }
  });
});

describe("throttling and conflicts", () => {
  test("429 with Retry-After: each throttled request waits as told, is sent again, and the switch finishes", async () => {
    await freshCluster("thr", 4);
    const p = await proxy("throttle");
    const op = await operatorVia(p, "throttle", "faults-throttle");
    await waitForDriverPods(client, 4);
    await waitForState(client, "ready");
    const placement = await watchPlacement(client);
    try {
      // Every distinct write, and every list, is refused once with Retry-After 2.
      p.inject({ status: 429, retryAfterSeconds: 2, oncePerRequest: true, match: (r) => isWrite(r) || (r.method === "GET" && !r.url.includes("watch=") && !r.url.includes("/leases")) });
      const from = p.requests.length;
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${toPrecompiled}`]);
      await assertConverged(client, nodeNames, isPrecompiledPod);
      const seen = p.requests.slice(from);
      const throttled = seen.filter((r) => r.outcome === "injected");
      assert.ok(throttled.filter(isWrite).length >= 4, `writes were throttled: ${throttled.map((r) => `${r.method} ${r.url}`).join(", ")}`);
      for (const t of throttled) {
        const again = seen.find((r) => r.at > t.at && r.method === t.method && r.url === t.url && r.body === t.body);
        assert.ok(again, `${t.method} ${t.url} was sent again after its 429`);
        assert.ok(again.at - t.at >= 2000 - 50, `${t.method} ${t.url} waited ${again.at - t.at} ms after Retry-After: 2`);
      }
      assert.deepEqual(placement.unsteady(), [], "each node went from its old pool to its new one once");
      placement.assertNoOverlap();
      assert.equal(op.proc.exitCode, null, "the operator is still running");
    } finally {
      p.clearInjections();
      await placement.stop();
      await op.stop();
    }
  });

  test("409 on writes: nothing stale is written back, and the status follows the latest spec", async () => {
    await freshCluster("conf", 4);
    const p = await proxy("conflict");
    const op = await operatorVia(p, "conflict", "faults-conflict");
    await waitForDriverPods(client, 4);
    await waitForState(client, "ready");
    const placement = await watchPlacement(client);
    const isStatusWrite = (r: { method: string; url: string }) => r.method === "PATCH" && r.url.startsWith("/apis/nvidia.com/v1/clusterpolicies/cluster-policy/status");
    try {
      // Every status write conflicts until the spec has changed under it; every other write conflicts once.
      p.inject({ status: 409, match: isStatusWrite });
      p.inject({ status: 409, oncePerRequest: true, match: (r) => isWrite(r) && !isStatusWrite(r) });
      const from = p.requests.length;
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${toPrecompiled}`]);
      await eventually("a status write conflicts", async () => (p.requests.slice(from).some((r) => r.outcome === "injected" && isStatusWrite(r)) ? true : undefined));
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op":"replace","path":"/spec/driver/version","value":"535"}]']);
      const latest = (await getPolicy(client)).metadata.generation;
      // The operator has acted on the latest spec once a DaemonSet carries its image.
      await eventually("the operator applies the latest spec", async () => ((await driverDaemonSets(client)).some((d) => JSON.stringify(d.spec?.template).includes(":535-")) ? true : undefined));
      const cleared = p.requests.length;
      p.clearInjections();
      await assertConverged(client, nodeNames, isPrecompiledPod);
      // The operand controller writes status.operands alone (no generation); the driver's status is what is checked here.
      const isDriverStatus = (body: string) => (JSON.parse(body) as { status?: { conditions?: unknown } }).status?.conditions !== undefined;
      const statusWrites = p.requests.slice(cleared).filter((r) => isStatusWrite(r) && r.outcome === "forwarded" && isDriverStatus(r.body));
      assert.ok(statusWrites.length > 0, "the status was written once the conflicts stopped");
      for (const w of statusWrites) {
        const observed = (JSON.parse(w.body) as { status?: { observedGeneration?: number } }).status?.observedGeneration;
        assert.equal(observed, latest, `a status write after the conflicts reports generation ${String(observed)}, not the latest ${String(latest)}`);
      }
      const conflicted = p.requests.slice(from).filter((r) => r.outcome === "injected");
      assert.ok(conflicted.some((r) => !isStatusWrite(r)), "other writes met conflicts too");
      for (const c of conflicted.filter((r) => !isStatusWrite(r))) {
        assert.ok(p.requests.slice(cleared).some((r) => r.method === c.method && r.url === c.url) || p.requests.some((r) => r.at > c.at && r.method === c.method && r.url === c.url && r.outcome === "forwarded"), `${c.method} ${c.url} was sent again`);
      }
      assert.deepEqual(placement.unsteady(), [], "no node was moved back by a stale write");
      placement.assertNoOverlap();
      assert.equal(op.proc.exitCode, null, "the operator is still running");
    } finally {
      p.clearInjections();
      await placement.stop();
      await op.stop();
    }
  });
});
