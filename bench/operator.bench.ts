// The operator at scale on the local cluster: 1,000 simulated GPU nodes over
// 20 kernels and two Ubuntu releases, then usePrecompiled flipped on. Measures
// the seconds until every DaemonSet is as desired, the API requests the
// operator made (by verb) and its peak memory. The switch runs twice in the
// same cluster: gpuop's rolling switch (maxUnavailable 25%) and, as the
// baseline, everything at once (maxUnavailable 100%, what NVIDIA's operator
// does by deleting every old DaemonSet together).
import { readFileSync } from "node:fs";
import { startCluster, stopCluster, type LocalCluster } from "../test/harness/cluster.ts";
import { createGpuNode } from "../test/harness/nodes.ts";
import { startOperator, type OperatorProcess } from "../test/harness/operator.ts";
import { deletePolicies, driverDaemonSets, driverPods, ensureNamespace, installCrd } from "../test/harness/policy.ts";
import { eventually } from "../test/harness/wait.ts";
import { mapLimit } from "../src/registry/pool.ts";
import type { KubeClient } from "../src/kube/client.ts";
import { seconds, type Benchmark } from "./benchmark.ts";

const NODES = Number(process.env.GPUOP_BENCH_NODES ?? 1000);
const KERNELS = 20;
const NS = "gpu-operator";

const peakMemoryMiB = (pid: number) => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
};

async function requestsByVerb(op: OperatorProcess): Promise<Record<string, number>> {
  const text = await op.metrics();
  return Object.fromEntries([...text.matchAll(/^gpuop_api_requests_total\{verb="([a-z]+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

const diff = (after: Record<string, number>, before: Record<string, number>) =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) > 0));

/** Every DaemonSet has all its pods ready, each pool's nodes are covered, and no pod of the other mode is left. */
async function converged(client: KubeClient, precompiled: boolean): Promise<void> {
  await eventually(`all DaemonSets as desired (precompiled=${precompiled})`, async () => {
    const sets = await driverDaemonSets(client);
    const pods = await driverPods(client);
    const want = String(precompiled);
    const ok = sets.length > 0 && sets.every((d) => d.metadata.labels?.["nvidia.com/precompiled"] === want && d.status?.numberReady === d.status?.desiredNumberScheduled && d.status?.observedGeneration === d.metadata.generation)
      && pods.length === NODES && pods.every((p) => p.status?.phase === "Running" && p.metadata.labels?.["nvidia.com/precompiled"] === want)
      && sets.reduce((s, d) => s + (d.status?.numberReady ?? 0), 0) === NODES;
    if (!ok) throw new Error(`${sets.length} DaemonSets, ${pods.length} pods, ${pods.filter((p) => p.status?.phase === "Running").length} running`);
    return true;
  }, { timeoutMs: 30 * 60_000, intervalMs: 500 });
}

async function flip(cluster: LocalCluster, client: KubeClient, op: OperatorProcess, maxUnavailable: string) {
  await deletePolicies(client);
  await eventually("no driver pods", async () => ((await driverPods(client)).length === 0 ? true : undefined), { timeoutMs: 10 * 60_000, intervalMs: 500 });
  await cluster.kubectl(["apply", "-f", "-"], {
    input: JSON.stringify({
      apiVersion: "nvidia.com/v1",
      kind: "ClusterPolicy",
      metadata: { name: "cluster-policy" },
      spec: { driver: { repository: "nvcr.io/nvidia", version: "580.95.05", upgradePolicy: { maxUnavailable, maxParallelUpgrades: 0 } } },
    }),
  });
  const installStart = performance.now();
  await converged(client, false);
  const install = seconds(installStart);
  const before = await requestsByVerb(op);
  const start = performance.now();
  await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", '-p=[{"op":"replace","path":"/spec/driver/usePrecompiled","value":true},{"op":"replace","path":"/spec/driver/version","value":"580"}]']);
  await converged(client, true);
  const switchSeconds = seconds(start);
  const pools = (await driverDaemonSets(client)).length;
  return { install, switchSeconds, pools, requests: diff(await requestsByVerb(op), before) };
}

export const benchmark: Benchmark = {
  name: `operator: ${NODES} GPU nodes over ${KERNELS} kernels, usePrecompiled flipped on`,
  async run() {
    const name = "gpuop-bench";
    const cluster = await startCluster(name);
    const client = cluster.client();
    let op: OperatorProcess | undefined;
    try {
      await installCrd(cluster);
      await ensureNamespace(client, NS);
      const createStart = performance.now();
      await mapLimit([...Array(NODES).keys()], 32, (i) =>
        createGpuNode(client, {
          name: `bench-${String(i).padStart(4, "0")}`,
          kernel: i % KERNELS < KERNELS / 2 ? `5.15.0-${100 + (i % KERNELS)}-generic` : `6.8.0-${1000 + (i % KERNELS)}-aws`,
          os: i % KERNELS < KERNELS / 2 ? { id: "ubuntu", versionId: "22.04" } : { id: "ubuntu", versionId: "24.04" },
        }),
      );
      console.log(`created ${NODES} simulated GPU nodes in ${seconds(createStart)} s`);
      op = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
      const rolling = await flip(cluster, client, op, "25%");
      const allAtOnce = await flip(cluster, client, op, "100%");
      const peak = peakMemoryMiB(op.proc.pid!);
      const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
      console.log(`conventional install (one DaemonSet per OS release), until every pod is ready: ${rolling.install} s`);
      console.log(`switch to precompiled, until every one of ${rolling.pools} DaemonSets is as desired:`);
      console.log(`  gpuop, rolling (maxUnavailable 25%):          ${rolling.switchSeconds} s, ${total(rolling.requests)} API requests ${JSON.stringify(rolling.requests)}`);
      console.log(`  baseline, all at once (maxUnavailable 100%):  ${allAtOnce.switchSeconds} s, ${total(allAtOnce.requests)} API requests ${JSON.stringify(allAtOnce.requests)}`);
      console.log(`  rolling / all at once:                        ${(rolling.switchSeconds / allAtOnce.switchSeconds).toFixed(2)}x time, ${(total(rolling.requests) / Math.max(1, total(allAtOnce.requests))).toFixed(2)}x requests`);
      console.log(`operator peak memory (VmHWM): ${peak} MiB for ${NODES} nodes and ${NODES} driver pods in its caches`);
    } finally {
      await op?.stop();
      await client.close();
      await stopCluster(name);
    }
  },
};
