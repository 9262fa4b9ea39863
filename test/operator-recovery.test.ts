// How the operator recovers from what goes wrong around it, against the real cluster: a failed
// API call retried with back-off, a leader that crashes holding its Lease, and a leader whose
// Lease is taken (it must exit non-zero so that its pod restarts as a standby).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { startOperator, type OperatorProcess } from "./harness/operator.ts";
import { deletePolicies, driverDaemonSets, ensureNamespace, examplePolicy, installCrd, waitForDriverPods, waitForState } from "./harness/policy.ts";
import { eventually } from "./harness/wait.ts";
import type { KubeClient } from "../src/kube/client.ts";

const NS = "gpu-operator";
const NODE = "recover-a";
let cluster: LocalCluster;
let client: KubeClient;
const started: OperatorProcess[] = [];

/** An operator with a Lease of this file's own, so no other test's replica competes for it. */
async function operator(opts: { identity?: string; leaderElect?: boolean; lease?: string } = {}): Promise<OperatorProcess> {
  const p = await startOperator({
    kubeconfig: cluster.kubeconfig,
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...(opts.leaderElect === false ? { leaderElect: false } : {}),
    args: ["--no-image-check", "--lease-name", opts.lease ?? "recovery-leader"],
  });
  started.push(p);
  return p;
}

interface Lease { metadata: { resourceVersion?: string }; spec: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; leaseTransitions?: number } }
const leasePath = (name: string) => `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${name}`;
const holder = async (name: string) => (await client.get<Lease>(leasePath(name)).catch(() => undefined))?.spec.holderIdentity;

/** The operator's JSON log lines with this message. */
const logLines = (p: OperatorProcess, msg: string) =>
  p.logs().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === msg);

before(async () => {
  cluster = attachCluster(process.env.GPUOP_TEST_CLUSTER ?? "");
  client = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(client, NS);
  await deletePolicies(client);
  await createGpuNode(client, { name: NODE, kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" } });
  await cluster.kubectl(["apply", "-f", "-"], { input: examplePolicy });
});

after(async () => {
  for (const p of started) await p.stop("SIGKILL");
  await client.delete(`/api/v1/namespaces/${NS}/resourcequotas/no-daemonsets`).catch(() => undefined);
  await deletePolicies(client).catch(() => undefined);
  await deleteNodes(client, [NODE]);
  await client.close();
});

describe("a failed API call", () => {
  test("is retried with growing back-off until it succeeds", async () => {
    const p = await operator({ leaderElect: false });
    try {
      await waitForDriverPods(client, 1);
      await waitForState(client, "ready");
      const [ds] = await driverDaemonSets(client);
      const name = ds!.metadata.name!;
      // A quota of no DaemonSets: the API server refuses to create one (403), however often asked.
      await client.create(`/api/v1/namespaces/${NS}/resourcequotas`, { metadata: { name: "no-daemonsets" }, spec: { hard: { "count/daemonsets.apps": "0" } } });
      await eventually("the quota is counted", async () => {
        const q = await client.get<{ status?: { used?: Record<string, string> } }>(`/api/v1/namespaces/${NS}/resourcequotas/no-daemonsets`);
        // The operands' DaemonSets count too: any count shows the quota is in force.
        return Number(q.status?.used?.["count/daemonsets.apps"] ?? 0) >= 1 ? true : undefined;
      });
      await cluster.kubectl(["-n", NS, "delete", "daemonset", name, "--wait=true"]);
      const failures = await eventually("three failed reconciles", async () => {
        const lines = logLines(p, "reconcile failed; retrying");
        return lines.length >= 3 ? lines : undefined;
      }, { timeoutMs: 60_000 });
      assert.match(String(failures[0]!.error), /forbidden|quota/i, String(failures[0]!.error));
      // The work queue doubles the base delay per failure; each wait is drawn from [d/2, d].
      const waits = failures.map((l) => Number(l.retryInMs));
      waits.slice(0, 3).forEach((ms, i) => assert.ok(ms >= 100 * 2 ** i, `retry ${i + 1} after ${ms} ms: ${waits.join(", ")}`));
      assert.equal((await driverDaemonSets(client)).length, 0);
      // Nothing the operator watches changes now: only its retry can bring the DaemonSet back.
      await client.delete(`/api/v1/namespaces/${NS}/resourcequotas/no-daemonsets`);
      await waitForDriverPods(client, 1);
      assert.deepEqual((await driverDaemonSets(client)).map((d) => d.metadata.name), [name]);
      await waitForState(client, "ready");
    } finally {
      await client.delete(`/api/v1/namespaces/${NS}/resourcequotas/no-daemonsets`).catch(() => undefined);
      await p.stop();
    }
  });
});

describe("leader election", () => {
  test("a leader that crashes keeps its Lease until it expires; then the standby takes over and serves", async () => {
    const lease = "recovery-crash";
    const a = await operator({ identity: "crash-a", lease });
    const first = await eventually("a leader", async () => (await holder(lease)) || undefined);
    const b = await operator({ identity: "crash-b", lease });
    const [leader, standby] = first === a.identity ? [a, b] : [b, a];
    const transitions = (await client.get<Lease>(leasePath(lease))).spec.leaseTransitions ?? 0;
    await leader.stop("SIGKILL");
    // Killed, it released nothing: the Lease still names it.
    assert.equal(await holder(lease), leader.identity);
    await eventually("the standby takes the expired Lease", async () => ((await holder(lease)) === standby.identity ? true : undefined), { timeoutMs: 90_000 });
    assert.equal((await client.get<Lease>(leasePath(lease))).spec.leaseTransitions, transitions + 1);
    assert.match(await standby.metrics(), /^gpuop_leader 1$/m);
    // It serves: a deleted DaemonSet comes back.
    await waitForDriverPods(client, 1);
    const [ds] = await driverDaemonSets(client);
    await cluster.kubectl(["-n", NS, "delete", "daemonset", ds!.metadata.name!, "--wait=true"]);
    await eventually("DaemonSet recreated", async () => ((await driverDaemonSets(client)).some((d) => d.metadata.uid !== ds!.metadata.uid) ? true : undefined));
    await waitForDriverPods(client, 1);
    await standby.stop();
  });

  test("a leader whose Lease is taken exits non-zero", async () => {
    const lease = "recovery-lost";
    const p = await operator({ identity: "lost-a", lease });
    await eventually("it leads", async () => ((await holder(lease)) === p.identity ? true : undefined));
    // Another holder renews the Lease, as a replica that judged it expired would.
    const code = await eventually("the operator exits", async () => {
      const l = await client.get<Lease>(leasePath(lease));
      l.spec = { ...l.spec, holderIdentity: "intruder", renewTime: new Date().toISOString().replace("Z", "000Z") };
      await client.request("PUT", leasePath(lease), { body: l }).catch(() => undefined);
      return p.proc.exitCode ?? undefined;
    }, { timeoutMs: 90_000, intervalMs: 2000 });
    assert.equal(code, 1, p.logs());
    assert.equal(logLines(p, "lost leadership").length, 1);
  });
});
