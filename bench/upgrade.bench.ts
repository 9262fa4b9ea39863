// A driver version bump on 1,000 simulated GPU nodes with maxParallelUpgrades 0
// (only maxUnavailable, 25%, limits it): seconds until every node runs the new
// driver and is upgrade-done, API requests by verb, and the most nodes seen at
// once without a Ready driver pod (sampled), which must stay within the budget.
import { startCluster, stopCluster } from "../test/harness/cluster.ts";
import { createGpuNode } from "../test/harness/nodes.ts";
import { startOperator, type OperatorProcess } from "../test/harness/operator.ts";
import { driverPods, ensureNamespace, installCrd } from "../test/harness/policy.ts";
import { eventually } from "../test/harness/wait.ts";
import { mapLimit } from "../src/registry/pool.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node } from "../src/kube/types.ts";
import { seconds, type Benchmark } from "./benchmark.ts";

const NODES = Number(process.env.GPUOP_BENCH_NODES ?? 1000);
const NS = "gpu-operator";
const STATE = "nvidia.com/gpu-driver-upgrade-state";

async function requestsByVerb(op: OperatorProcess): Promise<Record<string, number>> {
  const text = await op.metrics();
  return Object.fromEntries([...text.matchAll(/^gpuop_api_requests_total\{verb="([a-z]+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

const ready = (p: { metadata: { deletionTimestamp?: string }; status?: { conditions?: { type: string; status: string }[] } }) =>
  !p.metadata.deletionTimestamp && p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;

/** Every node upgrade-done with one Ready driver pod running `image`. */
async function allDone(client: KubeClient, image: string): Promise<void> {
  await eventually(`every node on ${image}`, async () => {
    const [pods, nodes] = await Promise.all([driverPods(client), client.list<Node>("/api/v1/nodes")]);
    const good = pods.filter((p) => ready(p) && p.spec?.containers?.[0]?.image === image).length;
    const done = nodes.items.filter((n) => n.metadata.labels?.[STATE] === "upgrade-done").length;
    if (good !== NODES || done !== NODES || pods.length !== NODES) throw new Error(`${good} ready on ${image}, ${done} upgrade-done, ${pods.length} pods`);
    return true;
  }, { timeoutMs: 60 * 60_000, intervalMs: 1000 });
}

export const benchmark: Benchmark = {
  name: `upgrade: ${NODES} GPU nodes, driver version bump, maxParallelUpgrades 0, maxUnavailable 25%`,
  async run() {
    const name = "gpuop-bench-upgrade";
    const cluster = await startCluster(name);
    const client = cluster.client();
    let op: OperatorProcess | undefined;
    try {
      await installCrd(cluster);
      await ensureNamespace(client, NS);
      await mapLimit([...Array(NODES).keys()], 32, (i) => createGpuNode(client, { name: `upg-${String(i).padStart(4, "0")}`, kernel: "5.15.0-100-generic" }));
      op = await startOperator({ kubeconfig: cluster.kubeconfig, leaderElect: false });
      await cluster.kubectl(["apply", "-f", "-"], {
        input: JSON.stringify({
          apiVersion: "nvidia.com/v1",
          kind: "ClusterPolicy",
          metadata: { name: "cluster-policy" },
          spec: { driver: { repository: "nvcr.io/nvidia", version: "580.95.05", upgradePolicy: { maxParallelUpgrades: 0, maxUnavailable: "25%" } } },
        }),
      });
      await allDone(client, "nvcr.io/nvidia/driver:580.95.05-ubuntu22.04");
      const budget = Math.ceil(NODES * 0.25);
      const before = await requestsByVerb(op);
      let maxWithout = 0;
      let samples = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const pods = await driverPods(client);
          const withDriver = new Set(pods.filter(ready).map((p) => p.spec?.nodeName));
          maxWithout = Math.max(maxWithout, NODES - withDriver.size);
          samples++;
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      const start = performance.now();
      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=merge", "-p", '{"spec":{"driver":{"version":"580.105.08"}}}']);
      await allDone(client, "nvcr.io/nvidia/driver:580.105.08-ubuntu22.04");
      const took = seconds(start);
      sampling = false;
      await sampler;
      const after = await requestsByVerb(op);
      const requests = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) > 0));
      const total = (Object.values(requests) as number[]).reduce((a, b) => a + b, 0);
      console.log(`version bump 580.95.05 -> 580.105.08 on ${NODES} nodes, until every node is upgrade-done on the new driver: ${took} s`);
      console.log(`  API requests by the operator: ${total} ${JSON.stringify(requests)}`);
      console.log(`  most nodes without a Ready driver at once: ${maxWithout} (budget ${budget}; ${samples} samples)${maxWithout > budget ? "  OVER BUDGET" : ""}`);
      if (maxWithout > budget) throw new Error(`${maxWithout} nodes without a Ready driver at once; the budget is ${budget}`);
    } finally {
      await op?.stop();
      await client.close();
      await stopCluster(name);
    }
  },
};
