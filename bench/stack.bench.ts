// The whole GPU stack at scale: gpuop alone, with NVIDIA's operands on (toolkit,
// device plugin, GFD, DCGM exporter, validator), on a fresh local cluster of N
// simulated GPU nodes (Ubuntu 22.04, 20 kernels). Phases: install (a
// conventional policy until every node runs a Ready driver and every operand
// Ready), a driver version upgrade (every node through NVIDIA's upgrade steps,
// its operands stopped and brought back in order), then a steady window.
// Requests are counted server-side from the audit log, as in operator.bench.ts;
// the operator's log is kept in .tmp/bench/bench-gpuop-stack/operator.log.
// Environment: GPUOP_BENCH_STACK_NODES (200), GPUOP_BENCH_TIMEOUT_S (420, per
// phase), GPUOP_BENCH_STEADY_S (60).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startCluster, stopCluster } from "../test/harness/cluster.ts";
import { createGpuNode } from "../test/harness/nodes.ts";
import { startOperator } from "../test/harness/operator.ts";
import { ensureNamespace, installCrd } from "../test/harness/policy.ts";
import { repoRoot } from "../test/harness/tools.ts";
import { eventually } from "../test/harness/wait.ts";
import { mapLimit } from "../src/registry/pool.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node, Pod } from "../src/kube/types.ts";
import { auditArgs, countRequests, OPERATOR_SA, readAudit, type RequestCounts } from "./scale/audit.ts";
import { cpuSeconds, peakRssMiB } from "./scale/proc.ts";
import { operatorKubeconfig, writesByResource } from "./operator.bench.ts";
import type { Benchmark } from "./benchmark.ts";

const NODES = Number(process.env.GPUOP_BENCH_STACK_NODES ?? 200);
const KERNELS = 20;
const TIMEOUT_MS = Number(process.env.GPUOP_BENCH_TIMEOUT_S ?? 420) * 1000;
const STEADY_MS = Number(process.env.GPUOP_BENCH_STEADY_S ?? 60) * 1000;
const NS = OPERATOR_SA.namespace;
const REPOSITORY = "nvcr.io/nvidia";
const APPS = ["nvidia-driver-daemonset", "nvidia-container-toolkit-daemonset", "nvidia-device-plugin-daemonset", "gpu-feature-discovery", "nvidia-dcgm-exporter", "nvidia-operator-validator"];
const STATE = "nvidia.com/gpu-driver-upgrade-state";

const ready = (p: Pod) => !p.metadata.deletionTimestamp && (p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false);

interface Phase { seconds: number | null; cpu: number; requests: RequestCounts; byResource: Record<string, number> }

/** Polls until every node has one Ready pod of every app (the driver with `image`), and no upgrade under way; or the timeout. */
async function waitStack(client: KubeClient, nodes: string[], image: string): Promise<boolean> {
  const deadline = Date.now() + TIMEOUT_MS;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const pods = (await client.list<Pod>(`/api/v1/namespaces/${NS}/pods`)).items;
      const have = new Map<string, number>();
      let wrongDriver = 0;
      for (const p of pods) {
        const app = p.metadata.labels?.["app"] ?? "";
        if (!APPS.includes(app) || !ready(p)) continue;
        if (app === APPS[0] && p.spec?.containers?.[0]?.image !== image) {
          wrongDriver++;
          continue;
        }
        have.set(app, (have.get(app) ?? 0) + 1);
      }
      const listed = (await client.list<Node>("/api/v1/nodes")).items;
      const busy = listed.filter((n) => n.metadata.labels?.[STATE] !== undefined && n.metadata.labels[STATE] !== "upgrade-done").length;
      last = `${APPS.map((a) => `${a}=${have.get(a) ?? 0}`).join(" ")} old-driver=${wrongDriver} upgrading=${busy}`;
      if (APPS.every((a) => (have.get(a) ?? 0) === nodes.length) && busy === 0) return true;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  console.log(`    not converged: ${last}`);
  return false;
}

export const benchmark: Benchmark = {
  name: `the whole stack: gpuop with NVIDIA's operands, ${NODES} GPU nodes: install, driver upgrade, steady`,
  async run() {
    const name = "bench-gpuop-stack";
    const workDir = join(repoRoot, ".tmp", "bench", name);
    rmSync(workDir, { recursive: true, force: true });
    mkdirSync(workDir, { recursive: true });
    const auditLog = join(workDir, "audit.log");
    const nodes = [...Array(NODES).keys()].map((i) => ({ name: `stack-${String(i).padStart(5, "0")}`, kernel: `5.15.0-${100 + (i % KERNELS)}-generic`, os: { id: "ubuntu", versionId: "22.04" } }));
    const names = nodes.map((n) => n.name);
    const cluster = await startCluster(name, { extraArgs: [...auditArgs(join(workDir, "audit-policy.json"), auditLog), "kube-apiserver=etcd-compaction-interval=5m"] });
    const client = cluster.client();
    let stop: (() => Promise<void>) | undefined;
    try {
      await ensureNamespace(client, NS);
      const kubeconfig = await operatorKubeconfig(cluster, client, join(workDir, "operator.kubeconfig"));
      await installCrd(cluster);
      await mapLimit(nodes, 32, (n) => createGpuNode(client, n));
      await eventually("every simulated node Ready", async () => {
        const listed = (await client.list<Node>("/api/v1/nodes")).items;
        const n = listed.filter((x) => x.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")).length;
        if (n < nodes.length) throw new Error(`${n} of ${nodes.length} Ready`);
        return true;
      }, { timeoutMs: 10 * 60_000, intervalMs: 2000 });
      const op = await startOperator({ kubeconfig, leaderElect: false });
      const pid = op.proc.pid!;
      stop = async () => {
        await op.stop();
        writeFileSync(join(workDir, "operator.log"), op.logs());
      };

      const cpu0 = cpuSeconds(pid);
      const t0 = Date.now();
      await cluster.kubectl(["apply", "-f", "-"], {
        input: JSON.stringify({ apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy" }, spec: { driver: { repository: REPOSITORY, version: "580.95.05", upgradePolicy: { maxUnavailable: "25%", maxParallelUpgrades: 0 } } } }),
      });
      const installed = await waitStack(client, names, `${REPOSITORY}/driver:580.95.05-ubuntu22.04`);
      const t1 = Date.now();
      const cpu1 = cpuSeconds(pid);
      console.log(`  install ${installed ? `converged in ${((t1 - t0) / 1000).toFixed(1)} s` : "did not converge"}`);

      await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=merge", "-p", '{"spec":{"driver":{"version":"580.105.08"}}}']);
      const upgraded = await waitStack(client, names, `${REPOSITORY}/driver:580.105.08-ubuntu22.04`);
      const t2 = Date.now();
      const cpu2 = cpuSeconds(pid);
      console.log(`  upgrade ${upgraded ? `converged in ${((t2 - t1) / 1000).toFixed(1)} s` : "did not converge"}`);

      await new Promise((r) => setTimeout(r, 5000));
      const t3 = Date.now();
      await new Promise((r) => setTimeout(r, STEADY_MS));
      const t4 = Date.now();
      await new Promise((r) => setTimeout(r, 2000));
      const events = readAudit(auditLog);
      const phase = (ok: boolean, from: number, to: number, cpu: number): Phase => ({ seconds: ok ? (to - from) / 1000 : null, cpu, requests: countRequests(events, from, to), byResource: writesByResource(events, from, to) });
      const install = phase(installed, t0, t1, cpu1 - cpu0);
      const upgrade = phase(upgraded, t1, t2, cpu2 - cpu1);
      const steady = countRequests(events, t3, t4);
      const perNode = (p: Phase) => ((p.byResource["patch nodes"] ?? 0) / NODES).toFixed(2);
      const fmt = (s: number | null) => (s === null ? `not converged in ${TIMEOUT_MS / 1000}` : s.toFixed(1));
      console.log(`\n| N | install s | writes install | node patches per node | upgrade s | writes upgrade | node patches per node | peak RSS MiB | CPU s install / upgrade | requests in ${STEADY_MS / 1000} s steady (writes) |`);
      console.log("|---|---|---|---|---|---|---|---|---|---|");
      console.log(`| ${NODES} | ${fmt(install.seconds)} | ${install.requests.writes} | ${perNode(install)} | ${fmt(upgrade.seconds)} | ${upgrade.requests.writes} | ${perNode(upgrade)} | ${peakRssMiB(pid)} | ${install.cpu.toFixed(1)} / ${upgrade.cpu.toFixed(1)} | ${steady.nonWatch} (${steady.writes})${installed && upgraded ? "" : " never steady"} |`);
      console.log(`  install writes by resource ${JSON.stringify(install.byResource)}`);
      console.log(`  upgrade writes by resource ${JSON.stringify(upgrade.byResource)}; requests by verb ${JSON.stringify(upgrade.requests.byVerb)}`);
      console.log(`  steady window requests by verb ${JSON.stringify(steady.byVerb)}`);
      if (!installed || !upgraded) process.exitCode = 1;
    } finally {
      await stop?.();
      await client.close();
      await stopCluster(name);
    }
  },
};
