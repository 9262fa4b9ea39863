// gpuop beside NVIDIA's GPU Operator at scale. Each operator gets a fresh
// local cluster per workload (N simulated GPU nodes over 20 kernels: all on
// Ubuntu 22.04, or half on 22.04 and half on 24.04), a conventional
// ClusterPolicy for driver 580.95.05, then the seed's patch to precompiled 580.
// Requests are counted server-side from the API server's audit log (the
// operator runs as its own ServiceAccount; events grouped by user agent); CPU
// and memory come from /proc. Environment: GPUOP_BENCH_NODES (1000),
// GPUOP_BENCH_OPERATORS (gpuop,nvidia), GPUOP_BENCH_CLUSTERS (single,mixed),
// GPUOP_BENCH_TIMEOUT_S (420, per phase), GPUOP_BENCH_STEADY_S (60),
// GPUOP_BENCH_CPU_PROF (a folder: gpuop writes a V8 CPU profile there),
// GPUOP_BENCH_HEAP_SNAPSHOT (a folder: gpuop writes a heap snapshot there after the switch),
// GPUOP_BENCH_KERNELS (20), GPUOP_BENCH_NVIDIA_MAX_NODES (1000: above it NVIDIA's
// operator is skipped, as it does not converge), GPUOP_BENCH_NAME (bench: the
// clusters' name prefix), GPUOP_BENCH_OPERATOR_LOG (1: gpuop's log goes to
// operator.log in the work dir, beside audit.log and phases.json, to account for
// each node's writes with bench/scale/per-node.ts), GPUOP_BENCH_HEARTBEAT_FACTOR
// (kwokctl's --heartbeat-factor: 5, kwok's default, up to 1,000 nodes, N/200 above),
// GPUOP_BENCH_STEADY_PROF (a folder: a CPU profile of gpuop in the steady window
// alone, through its inspector), GPUOP_BENCH_SWITCH_PROF (the same for the switch),
// GPUOP_BENCH_SWITCH (0: no switch; the steady window follows the install),
// GPUOP_BENCH_SETTLE_S (5: the wait before the steady window).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { startCluster, stopCluster, type LocalCluster } from "../test/harness/cluster.ts";
import { createGpuNode } from "../test/harness/nodes.ts";
import { imageEnv, imageNodeOptions, startOperator } from "../test/harness/operator.ts";
import { ensureNamespace, installCrd } from "../test/harness/policy.ts";
import { repoRoot } from "../test/harness/tools.ts";
import { mapLimit } from "../src/registry/pool.ts";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node, Pod } from "../src/kube/types.ts";
import { eventually } from "../test/harness/wait.ts";
import { auditArgs, countRequests, OPERATOR_SA, readAudit, type AuditEvent, type RequestCounts } from "./scale/audit.ts";
import { installNvidiaCrds, nvidiaModuleDir, nvidiaPolicy, startNvidiaOperator } from "./scale/nvidia.ts";
import { cpuByThread, cpuSeconds, peakRssMiB, rssByBacking } from "./scale/proc.ts";
import { startWindowProfile } from "./scale/inspector.ts";
import { counterBetween, latencyQuantile, parseHistogram, totalsBetween, type HistogramSnapshot } from "./scale/histogram.ts";
import type { Benchmark } from "./benchmark.ts";

const NODES = Number(process.env.GPUOP_BENCH_NODES ?? 1000);
const KERNELS = Number(process.env.GPUOP_BENCH_KERNELS ?? 20);
const NVIDIA_MAX_NODES = Number(process.env.GPUOP_BENCH_NVIDIA_MAX_NODES ?? 1000);
const NAME = process.env.GPUOP_BENCH_NAME ?? "bench";
const TIMEOUT_MS = Number(process.env.GPUOP_BENCH_TIMEOUT_S ?? 420) * 1000;
const STEADY_MS = Number(process.env.GPUOP_BENCH_STEADY_S ?? 60) * 1000;
const OPERATORS = (process.env.GPUOP_BENCH_OPERATORS ?? "gpuop,nvidia").split(",") as OperatorName[];
const CLUSTERS = (process.env.GPUOP_BENCH_CLUSTERS ?? "single,mixed").split(",") as Workload[];
const CPU_PROF = process.env.GPUOP_BENCH_CPU_PROF;
/** A folder: gpuop's CPU profile of a window as long as the steady one, right after it, taken through its inspector. */
const STEADY_PROF = process.env.GPUOP_BENCH_STEADY_PROF;
/** A folder: gpuop's CPU profile of the switch alone (the profiler's own cost inflates the switch's CPU). */
const SWITCH_PROF = process.env.GPUOP_BENCH_SWITCH_PROF;
/** "0": no switch, the steady window follows the install (to study the steady cost at a large N in a third of the time). */
const SWITCH = process.env.GPUOP_BENCH_SWITCH !== "0";
/** The wait before the steady window (5 s): after an install alone, the validator pods are still starting. */
const SETTLE_MS = Number(process.env.GPUOP_BENCH_SETTLE_S ?? 5) * 1000;
/** A folder: gpuop writes a heap snapshot there when the switch has converged (what the heap holds at its fullest). */
const HEAP_SNAPSHOT = process.env.GPUOP_BENCH_HEAP_SNAPSHOT;
/** Keep gpuop's log in the work dir (operator.log), to account for every write per node. */
const OPERATOR_LOG = process.env.GPUOP_BENCH_OPERATOR_LOG === "1";
const NS = OPERATOR_SA.namespace;
/**
 * kwok renews each simulated node's lease every factor × 10 s, and kube-controller-manager waits
 * factor × 40 s for one before it marks the node NotReady. At 5,000 nodes on 2 cores the default
 * (5) was 100 renewals a second, and kwok fell behind: 739 nodes went NotReady in the install.
 * Neither operator reads leases; a longer period only lightens the simulated cluster.
 */
const HEARTBEAT_FACTOR = Number(process.env.GPUOP_BENCH_HEARTBEAT_FACTOR ?? Math.max(5, Math.ceil(NODES / 200)));
/** gpuop runs with the V8 options of its image, so memory is measured as deployed. */
/** Other V8 options in place of the image's, to measure a memory/CPU trade before it goes into the image. */
const NODE_OPTIONS = process.env.GPUOP_BENCH_NODE_OPTIONS ?? imageNodeOptions();
/** The image's malloc setting, so gpuop's memory is measured as deployed (an explicit MALLOC_ARENA_MAX wins). */
const MALLOC_ARENA_MAX = process.env.MALLOC_ARENA_MAX ?? imageEnv("MALLOC_ARENA_MAX");
const REPOSITORY = "nvcr.io/nvidia";
const SWITCH_PATCH = '[{"op":"replace","path":"/spec/driver/usePrecompiled","value":true},{"op":"replace","path":"/spec/driver/version","value":"580"}]';

type OperatorName = "gpuop" | "nvidia";
const DRIVER_ONLY = { toolkit: { enabled: false }, devicePlugin: { enabled: false }, gfd: { enabled: false }, dcgmExporter: { enabled: false } };
type Workload = "single" | "mixed";

interface SimNode { name: string; kernel: string; os: { id: string; versionId: string } }

function workloadNodes(w: Workload): SimNode[] {
  return [...Array(NODES).keys()].map((i) => {
    const k = i % KERNELS;
    const older = w === "single" || k < KERNELS / 2;
    return {
      name: `bench-${String(i).padStart(5, "0")}`,
      kernel: older ? `5.15.0-${100 + k}-generic` : `6.8.0-${1000 + k}-aws`,
      os: { id: "ubuntu", versionId: older ? "22.04" : "24.04" },
    };
  });
}

/** The driver image each node must run once a phase is done (the same tags for both operators). */
const wantedImage = (n: SimNode, precompiled: boolean) =>
  precompiled ? `${REPOSITORY}/driver:580-${n.kernel}-ubuntu${n.os.versionId}` : `${REPOSITORY}/driver:580.95.05-ubuntu${n.os.versionId}`;

const ready = (p: Pod) => !p.metadata.deletionTimestamp && (p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false);
const driverImage = (p: Pod) => (p.spec?.containers?.find((c) => c.name === "nvidia-driver-ctr") ?? p.spec?.containers?.[0])?.image;

/** CPU by thread, the collector's pauses on the main thread by kind, and each controller's passes (count, seconds in all). */
interface Spent {
  threads: { main: number; v8: number; other: number };
  gc: Record<string, { sum: number; count: number }>;
  passes: Record<string, { sum: number; count: number }>;
  /** Changes the watches brought, by resource and outcome (handled, or unchanged: dropped as no news). */
  watched: Record<string, number>;
}

function spentBetween(threads0: Spent["threads"], threads1: Spent["threads"], before: string, after: string): Spent {
  const byKind = (name: string, label: (key: string) => string) =>
    Object.fromEntries([...totalsBetween(before, after, name)].map(([k, v]) => [label(k), v]));
  return {
    threads: { main: threads1.main - threads0.main, v8: threads1.v8 - threads0.v8, other: threads1.other - threads0.other },
    gc: byKind("nodejs_gc_duration_seconds", (k) => /kind="([^"]+)"/.exec(k)?.[1] ?? k),
    passes: { ...byKind("gpuop_reconcile_duration_seconds", () => "driver"), ...byKind("gpuop_operand_reconcile_duration_seconds", () => "operands") },
    watched: Object.fromEntries([...counterBetween(before, after, "gpuop_watch_events_total")].map(([labels, n]) => [labels.replace(/resource="([^"]+)",outcome="([^"]+)"/, "$1 $2"), n])),
  };
}

interface Phase { seconds: number | null; cpu: number; requests: RequestCounts; byResource: Record<string, number> }

interface Result {
  operator: OperatorName;
  workload: Workload;
  install: Phase;
  switch: Phase;
  steady: RequestCounts;
  /** The operator's CPU seconds in the steady window, and the window's length: what it costs while nothing changes (watch events, heartbeats, timers). */
  steadyCpu: { cpu: number; seconds: number };
  steadyIsSteady: boolean;
  peakRss: number;
  peakHeap?: number;
  /** gpuop's memory by kind at the highest RSS of its 5-second samples (VmHWM can fall between two). */
  atPeakRss?: MemorySample;
  mostWithoutDriver: number;
  latency?: { p50: string; p99: string; count: number };
  /** Wall time of one pass of each controller in the switch (as latency: the bucket the quantile falls under), and the passes. */
  passes?: { driver: { p50: string; p99: string; count: number }; operands: { p50: string; p99: string; count: number } };
  /** Where gpuop's CPU went in the switch and in the steady window: threads, garbage collection pauses, passes. */
  spent?: { switch: Spent; steady: Spent };
  pools: number;
}

/**
 * Polls the driver pods until every node runs exactly one Ready driver pod with
 * the wanted image (and nothing else is left), or the timeout. While it polls it
 * tracks the most nodes that had no Ready driver at once.
 */
async function waitConverged(client: KubeClient, nodes: SimNode[], precompiled: boolean, onSample: (withoutDriver: number) => void): Promise<boolean> {
  const deadline = Date.now() + TIMEOUT_MS;
  const want = new Map(nodes.map((n) => [n.name, wantedImage(n, precompiled)]));
  let pods: Pod[] = [];
  let progress = { ready: -1, at: Date.now() };
  while (Date.now() < deadline) {
    try {
      pods = (await client.list<Pod>(`/api/v1/namespaces/${NS}/pods`, { labelSelector: "app=nvidia-driver-daemonset" })).items;
    } catch (err) {
      // A busy API server may answer 429 (its watch cache reinitializing): ask again.
      console.log(`    (listing driver pods: ${(err as Error).message}; retrying)`);
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    const withReady = new Set(pods.filter(ready).map((p) => p.spec?.nodeName));
    onSample(nodes.filter((n) => !withReady.has(n.name)).length);
    if (withReady.size !== progress.ready) progress = { ready: withReady.size, at: Date.now() };
    else if (withReady.size < nodes.length && Date.now() - progress.at > STALL_MS) {
      await nudgeDaemonSets(client);
      progress.at = Date.now();
    }
    const podsDone = pods.length === nodes.length && pods.every((p) => ready(p) && want.get(p.spec?.nodeName ?? "") === driverImage(p)) && withReady.size === nodes.length;
    // The upgrade is over too: no node left in a step (the last ones validate and uncordon after their pod is Ready).
    if (podsDone && (await upgradesDone(client))) return true;
    await new Promise((r) => setTimeout(r, 2000));
  }
  // Say what was left: driver pods by image and readiness, and how many run the image their node wants.
  const seen: Record<string, number> = {};
  for (const p of pods) {
    const k = `${driverImage(p)} ${ready(p) ? "ready" : p.metadata.deletionTimestamp ? "terminating" : "not ready"}`;
    seen[k] = (seen[k] ?? 0) + 1;
  }
  const right = pods.filter((p) => want.get(p.spec?.nodeName ?? "") === driverImage(p)).length;
  console.log(`    not converged: ${pods.length} driver pods, ${right} with the image their node needs; ${JSON.stringify(seen)}`);
  return false;
}

/**
 * The simulated cluster's DaemonSet controller (kube-controller-manager 1.36) can stop syncing a
 * DaemonSet after a run of "read version … is not as new as written version" errors, leaving nodes
 * without a pod and the status stale, with no retry (seen at 5,000 nodes). When the Ready driver pods
 * have not grown for STALL_MS, the benchmark annotates each driver DaemonSet (as the benchmark, not
 * the operator: the audit counts the operator's requests only), which makes that controller sync it
 * again. Neither operator reads the annotation. Each nudge is logged.
 */
const STALL_MS = Number(process.env.GPUOP_BENCH_STALL_S ?? 180) * 1000;
async function nudgeDaemonSets(client: KubeClient): Promise<void> {
  try {
    const { items } = await client.list<{ metadata: { name: string } }>(`/apis/apps/v1/namespaces/${NS}/daemonsets`);
    const stamp = new Date().toISOString();
    for (const d of items) await client.mergePatch(`/apis/apps/v1/namespaces/${NS}/daemonsets/${d.metadata.name}`, { metadata: { annotations: { "bench.gpuop.nvidia.com/nudge": stamp } } });
    console.log(`    (no driver pod became Ready for ${STALL_MS / 1000} s: nudged ${items.length} DaemonSets so the DaemonSet controller syncs them again)`);
  } catch (err) {
    console.log(`    (nudging the DaemonSets: ${(err as Error).message})`);
  }
}

/** No node in an upgrade step or cordoned (both operators label nodes with NVIDIA's upgrade state). */
async function upgradesDone(client: KubeClient): Promise<boolean> {
  try {
    const nodes = (await client.list<Node>("/api/v1/nodes")).items;
    return nodes.every((n) => !n.spec?.unschedulable && ["upgrade-done", undefined].includes(n.metadata.labels?.["nvidia.com/gpu-driver-upgrade-state"]));
  } catch {
    return false;
  }
}

/** A kubeconfig for the benchmark's ServiceAccount (bound to cluster-admin), so the audit log holds only the operator's requests. */
export async function operatorKubeconfig(cluster: LocalCluster, client: KubeClient, file: string): Promise<string> {
  await client.create(`/api/v1/namespaces/${NS}/serviceaccounts`, { metadata: { name: OPERATOR_SA.name } });
  await client.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
    metadata: { name: "bench-operator" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
    subjects: [{ kind: "ServiceAccount", name: OPERATOR_SA.name, namespace: NS }],
  });
  const token = (await cluster.kubectl(["create", "token", OPERATOR_SA.name, "-n", NS, "--duration=24h"])).stdout.trim();
  const a = client.access;
  writeFileSync(file, stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "bench", cluster: { server: a.server, ...(a.ca ? { "certificate-authority-data": Buffer.from(a.ca).toString("base64") } : { "insecure-skip-tls-verify": true }) } }],
    users: [{ name: "bench-operator", user: { token } }],
    contexts: [{ name: "bench", context: { cluster: "bench", user: "bench-operator" } }],
    "current-context": "bench",
  }));
  return file;
}

/** MiB, from the operator's process metrics (prom-client's defaults). */
interface MemorySample {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  /** Committed size of each V8 heap space (new, old, code, large_object, …). */
  spaces: Record<string, number>;
  /** RSS by backing, read from /proc beside the metrics. */
  backing?: { anon: number; file: number };
}

function memorySample(text: string): MemorySample | undefined {
  const mib = (bytes: string) => Math.round((Number(bytes) / 1024 / 1024) * 10) / 10;
  const gauge = (name: string): number | undefined => {
    const m = new RegExp(`^${name} (\\S+)`, "m").exec(text);
    return m ? mib(m[1]!) : undefined;
  };
  const rss = gauge("process_resident_memory_bytes");
  if (rss === undefined) return undefined;
  const spaces: Record<string, number> = {};
  for (const m of text.matchAll(/^nodejs_heap_space_size_total_bytes\{space="([^"]+)"\} (\S+)/gm)) spaces[m[1]!] = mib(m[2]!);
  return { rss, heapTotal: gauge("nodejs_heap_size_total_bytes") ?? 0, heapUsed: gauge("nodejs_heap_size_used_bytes") ?? 0, external: gauge("nodejs_external_memory_bytes") ?? 0, spaces };
}

async function metricsText(url: string): Promise<string> {
  return (await fetch(url)).text();
}

async function runOne(operator: OperatorName, workload: Workload): Promise<Result> {
  const name = `${NAME}-${operator}-${workload}`;
  const workDir = join(repoRoot, ".tmp", "bench", name);
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  const auditLog = join(workDir, "audit.log");
  const nodes = workloadNodes(workload);
  const log = (msg: string) => console.log(`  [${operator}, ${workload}] ${msg}`);
  const cluster = await startCluster(name, {
    extraArgs: [
      ...auditArgs(join(workDir, "audit-policy.json"), auditLog),
      // The test cluster compacts etcd every 5 s (for a 410 test); at this scale the API server's
      // default of 5 min keeps its watch cache from reinitializing (429s) in the middle of a run.
      "kube-apiserver=etcd-compaction-interval=5m",
    ],
    kwokctlArgs: ["--heartbeat-factor", String(HEARTBEAT_FACTOR)],
  });
  log(`kwok heartbeat factor ${HEARTBEAT_FACTOR} (node leases renewed every ${HEARTBEAT_FACTOR * 10} s)`);
  const client = cluster.client();
  let stop: (() => Promise<void>) | undefined;
  try {
    await ensureNamespace(client, NS);
    const kubeconfig = await operatorKubeconfig(cluster, client, join(workDir, "operator.kubeconfig"));
    const src = operator === "nvidia" ? await nvidiaModuleDir() : "";
    if (operator === "nvidia") await installNvidiaCrds(cluster, src);
    else await installCrd(cluster);
    const created = performance.now();
    await mapLimit(nodes, 32, (n) => createGpuNode(client, n));
    // kwok initializes each node's status right after creation: let that settle, as in a cluster whose nodes are up.
    await eventually("every simulated node Ready", async () => {
      const listed = (await client.list<Node>("/api/v1/nodes")).items;
      const readyNodes = listed.filter((n) => n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")).length;
      if (readyNodes < nodes.length) throw new Error(`${readyNodes} of ${nodes.length} Ready`);
      return true;
    }, { timeoutMs: 10 * 60_000, intervalMs: 2000 });
    log(`${NODES} simulated GPU nodes created and Ready in ${((performance.now() - created) / 1000).toFixed(1)} s`);

    let pid: number;
    let metricsUrl: string | undefined;
    if (operator === "gpuop") {
      const env = { ...(MALLOC_ARENA_MAX ? { MALLOC_ARENA_MAX } : {}), NODE_OPTIONS: [NODE_OPTIONS, ...(CPU_PROF ? [`--cpu-prof --cpu-prof-dir=${CPU_PROF} --cpu-prof-name=gpuop-${workload}-${NODES}.cpuprofile`] : []), ...(HEAP_SNAPSHOT ? [`--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${HEAP_SNAPSHOT}`] : [])].join(" ").trim(), ...(OPERATOR_LOG ? { GPUOP_TRACE_REQUESTS: "1" } : {}) };
      log(`gpuop starts with NODE_OPTIONS="${env.NODE_OPTIONS}"${MALLOC_ARENA_MAX ? ` MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX}` : ""}`);
      const op = await startOperator({ kubeconfig, leaderElect: false, env });
      pid = op.proc.pid!;
      metricsUrl = op.metricsUrl;
      stop = async () => {
        await op.stop();
        if (OPERATOR_LOG) writeFileSync(join(workDir, "operator.log"), op.logs());
      };
    } else {
      const op = await startNvidiaOperator({ kubeconfig, namespace: NS, src, logFile: join(workDir, "nvidia-operator.log"), workDir });
      pid = op.proc.pid!;
      stop = () => op.stop();
    }

    let peakHeap = 0;
    let atPeakRss: MemorySample | undefined;
    const heapTimer = metricsUrl
      ? setInterval(() => {
          void metricsText(metricsUrl).then((t) => {
            const m = /^gpuop_heap_used_bytes (\d+)/m.exec(t);
            // Every 5 s: rendering the metrics costs the operator CPU too (every second it was 3% of its CPU).
            if (m) peakHeap = Math.max(peakHeap, Number(m[1]));
            const sample = memorySample(t);
            if (sample && sample.rss > (atPeakRss?.rss ?? 0)) atPeakRss = { ...sample, backing: rssByBacking(pid) };
          }).catch(() => undefined);
        }, 5000)
      : undefined;
    try {
      const policy = operator === "nvidia"
        ? nvidiaPolicy({ repository: REPOSITORY, version: "580.95.05", maxUnavailable: "25%" })
        // As NVIDIA's above: the driver and the validator (which neither can turn off), every other operand off.
        // The whole stack is measured by bench/stack.bench.ts.
        : { apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy" }, spec: { driver: { repository: REPOSITORY, usePrecompiled: false, version: "580.95.05", upgradePolicy: { maxUnavailable: "25%", maxParallelUpgrades: 0 } }, ...DRIVER_ONLY } };

      // Install: the conventional policy until every node runs its Ready driver.
      const cpu0 = cpuSeconds(pid);
      const t0 = Date.now();
      await cluster.kubectl(["apply", "-f", "-"], { input: JSON.stringify(policy) });
      const installed = await waitConverged(client, nodes, false, () => undefined);
      const t1 = Date.now();
      const cpu1 = cpuSeconds(pid);
      log(installed ? `install converged in ${((t1 - t0) / 1000).toFixed(1)} s` : `install did not converge in ${TIMEOUT_MS / 1000} s`);

      // Switch: the seed's patch to precompiled.
      const threadsBefore = cpuByThread(pid);
      const metricsBefore = metricsUrl ? await metricsText(metricsUrl) : undefined;
      const before: HistogramSnapshot | undefined = metricsBefore ? parseHistogram(metricsBefore, "gpuop_reconcile_latency_seconds") : undefined;
      let most = 0;
      const switchProfile = SWITCH_PROF && SWITCH && operator === "gpuop" ? await startWindowProfile(pid) : undefined;
      const t2 = Date.now();
      if (SWITCH) await cluster.kubectl(["patch", "clusterpolicy/cluster-policy", "--type=json", `-p=${SWITCH_PATCH}`]);
      const switched = SWITCH ? await waitConverged(client, nodes, true, (n) => (most = Math.max(most, n))) : installed;
      const t3 = Date.now();
      const cpu2 = cpuSeconds(pid);
      const threadsAfter = cpuByThread(pid);
      if (switchProfile) writeFileSync(join(SWITCH_PROF!, `gpuop-switch-${workload}-${NODES}.cpuprofile`), await switchProfile.stop());
      const metricsAfter = metricsUrl ? await metricsText(metricsUrl) : undefined;
      const after: HistogramSnapshot | undefined = metricsAfter ? parseHistogram(metricsAfter, "gpuop_reconcile_latency_seconds") : undefined;
      const passes = metricsBefore && metricsAfter
        ? {
            driver: latencyQuantile(parseHistogram(metricsBefore, "gpuop_reconcile_duration_seconds"), parseHistogram(metricsAfter, "gpuop_reconcile_duration_seconds")),
            operands: latencyQuantile(parseHistogram(metricsBefore, "gpuop_operand_reconcile_duration_seconds"), parseHistogram(metricsAfter, "gpuop_operand_reconcile_duration_seconds")),
          }
        : undefined;
      if (!SWITCH) log("no switch (GPUOP_BENCH_SWITCH=0)");
      else log(switched ? `switch converged in ${((t3 - t2) / 1000).toFixed(1)} s` : `switch did not converge in ${TIMEOUT_MS / 1000} s`);
      if (HEAP_SNAPSHOT && operator === "gpuop") {
        // The snapshot is written synchronously by the operator; give it time before the steady window.
        process.kill(pid, "SIGUSR2");
        await new Promise((r) => setTimeout(r, 15_000));
      }

      // Steady: a window after a short settle, nothing changing.
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const t4 = Date.now();
      const cpu4 = cpuSeconds(pid);
      const threads4 = cpuByThread(pid);
      const metrics4 = metricsUrl ? await metricsText(metricsUrl) : undefined;
      await new Promise((r) => setTimeout(r, STEADY_MS));
      const t5 = Date.now();
      const cpu5 = cpuSeconds(pid);
      const threads5 = cpuByThread(pid);
      const metrics5 = metricsUrl ? await metricsText(metricsUrl) : undefined;
      // Profiled in a second window as long: the profiler's own cost stays out of the one measured.
      if (STEADY_PROF && operator === "gpuop") {
        const profile = await startWindowProfile(pid);
        await new Promise((r) => setTimeout(r, STEADY_MS));
        writeFileSync(join(STEADY_PROF, `gpuop-steady-${workload}-${NODES}.cpuprofile`), await profile.stop());
      }
      // The audit backend writes in batches: let it catch up before reading.
      await new Promise((r) => setTimeout(r, 2000));
      const events = readAudit(auditLog);
      // The phases' bounds (epoch ms), so the audit log and the operator's log can be cut the same way.
      writeFileSync(join(workDir, "phases.json"), JSON.stringify({ install: [t0, t1], switch: [t2, t3], steady: [t4, t5] }));
      const pools = Number((await cluster.kubectl(["get", "daemonsets", "-n", NS, "-l", "app=nvidia-driver-daemonset", "--no-headers"])).stdout.trim().split("\n").filter(Boolean).length);
      const phase = (ok: boolean, from: number, to: number, cpu: number): Phase => ({ seconds: ok ? (to - from) / 1000 : null, cpu, requests: countRequests(events, from, to), byResource: writesByResource(events, from, to) });
      const latency = before && after ? latencyQuantile(before, after) : undefined;
      return {
        operator,
        workload,
        install: phase(installed, t0, t1, cpu1 - cpu0),
        switch: phase(switched, t2, t3, cpu2 - cpu1),
        steady: countRequests(events, t4, t5),
        steadyCpu: { cpu: cpu5 - cpu4, seconds: (t5 - t4) / 1000 },
        steadyIsSteady: switched,
        peakRss: peakRssMiB(pid),
        ...(metricsUrl ? { peakHeap: Math.round(peakHeap / 1024 / 1024) } : {}),
        ...(atPeakRss ? { atPeakRss } : {}),
        mostWithoutDriver: most,
        ...(latency ? { latency } : {}),
        ...(passes ? { passes } : {}),
        ...(metricsBefore && metricsAfter && metrics4 && metrics5
          ? { spent: { switch: spentBetween(threadsBefore, threadsAfter, metricsBefore, metricsAfter), steady: spentBetween(threads4, threads5, metrics4, metrics5) } }
          : {}),
        pools,
      };
    } finally {
      if (heapTimer) clearInterval(heapTimer);
    }
  } finally {
    await stop?.();
    await client.close();
    await stopCluster(name);
  }
}

export function writesByResource(events: AuditEvent[], from: number, to: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of events) {
    if (e.at < from || e.at >= to || !["create", "update", "patch", "delete"].includes(e.verb)) continue;
    const k = `${e.verb} ${e.resource}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

const fmtS = (s: number | null) => (s === null ? `not converged in ${TIMEOUT_MS / 1000}` : s.toFixed(1));
const pct = (n: number) => `${n} (${Math.round((100 * n) / NODES)}%)`;

function spentLine(s: Spent): string {
  const t = s.threads;
  const kinds = (r: Record<string, { sum: number; count: number }>) =>
    Object.entries(r).filter(([, v]) => v.count > 0).map(([k, v]) => `${k} ${v.count} (${v.sum.toFixed(2)} s)`).join(", ") || "none";
  const watched = Object.entries(s.watched).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
  return `CPU s by thread: main ${t.main.toFixed(2)}, V8 workers ${t.v8.toFixed(2)}, other ${t.other.toFixed(2)}; collector pauses ${kinds(s.gc)}; passes ${kinds(s.passes)}; watch events ${watched}`;
}

function printTable(results: Result[]): void {
  const head = ["", "cluster", "N", "install s", "switch s", "writes install", "writes switch", "peak RSS MiB", "peak heap MiB", "CPU s install / switch", "CPU s per 1,000 nodes in switch", "requests in steady window (writes)", "most nodes without a Ready driver", "reconcile latency p50 / p99 s", "DaemonSets"];
  const rows = results.map((r) => [
    r.operator === "gpuop" ? "gpuop" : "NVIDIA's operator",
    r.workload === "single" ? "Ubuntu 22.04" : "22.04 + 24.04",
    String(NODES),
    fmtS(r.install.seconds),
    fmtS(r.switch.seconds),
    String(r.install.requests.writes),
    String(r.switch.requests.writes),
    String(r.peakRss),
    r.peakHeap !== undefined ? String(r.peakHeap) : "n/a",
    `${r.install.cpu.toFixed(1)} / ${r.switch.cpu.toFixed(1)}`,
    ((r.switch.cpu * 1000) / NODES).toFixed(2),
    `${r.steady.nonWatch} (${r.steady.writes})${r.steadyIsSteady ? "" : " never steady"}`,
    pct(r.mostWithoutDriver),
    r.latency ? `${r.latency.p50} / ${r.latency.p99}` : "n/a",
    String(r.pools),
  ]);
  console.log(`\n| ${head.join(" | ")} |\n|${head.map(() => "---").join("|")}|`);
  for (const row of rows) console.log(`| ${row.join(" | ")} |`);
  for (const r of results) {
    console.log(`\n${r.operator} on ${r.workload}: user agents ${JSON.stringify([...new Set([...r.install.requests.userAgents, ...r.switch.requests.userAgents, ...r.steady.userAgents])])}`);
    console.log(`  install writes by resource ${JSON.stringify(r.install.byResource)}; all requests by verb ${JSON.stringify(r.install.requests.byVerb)}`);
    console.log(`  switch writes by resource ${JSON.stringify(r.switch.byResource)}; all requests by verb ${JSON.stringify(r.switch.requests.byVerb)}`);
    console.log(`  steady window requests by verb ${JSON.stringify(r.steady.byVerb)}; operator CPU ${r.steadyCpu.cpu.toFixed(2)} s in ${r.steadyCpu.seconds.toFixed(0)} s`);
    if (r.atPeakRss) {
      const m = r.atPeakRss;
      console.log(`  memory at the highest sampled RSS (MiB): RSS ${m.rss}, V8 heap committed ${m.heapTotal} (used ${m.heapUsed}; by space ${Object.entries(m.spaces).map(([k, v]) => `${k} ${v}`).join(", ")}), external ${m.external}, the rest (the node binary, malloc, stacks) ${(m.rss - m.heapTotal - m.external).toFixed(1)}${m.backing ? `; by backing: anonymous ${m.backing.anon}, file-backed ${m.backing.file} (the node binary's pages)` : ""}`);
    }
    if (r.passes) console.log(`  switch passes: driver ${r.passes.driver.count} (p50 ${r.passes.driver.p50} s, p99 ${r.passes.driver.p99} s), operands ${r.passes.operands.count} (p50 ${r.passes.operands.p50} s, p99 ${r.passes.operands.p99} s)`);
    if (r.spent) {
      for (const phase of ["switch", "steady"] as const) console.log(`  ${phase}: ${spentLine(r.spent[phase])}`);
    }
    // The floor of each phase: one node patch per node, and the DaemonSets written.
    for (const phase of ["install", "switch"] as const) {
      const w = r[phase].byResource;
      const ds = Object.entries(w).filter(([k]) => k.endsWith(" daemonsets")).reduce((s, [, n]) => s + n, 0);
      const floor = NODES + ds;
      console.log(`  ${phase}: writes ${r[phase].requests.writes} / floor ${floor} (${NODES} node patches + ${ds} DaemonSet writes) = ${(r[phase].requests.writes / floor).toFixed(2)}x; node patches per node ${((w["patch nodes"] ?? 0) / NODES).toFixed(2)}`);
    }
  }
  for (const w of ["single", "mixed"] as const) {
    const g = results.find((r) => r.operator === "gpuop" && r.workload === w);
    const n = results.find((r) => r.operator === "nvidia" && r.workload === w);
    if (!g || !n) continue;
    const ratio = (a: number | null, b: number | null) => (a === null || b === null || b === 0 ? "n/a" : `${(a / b).toFixed(2)}x`);
    console.log(`\ngpuop / NVIDIA's operator on ${w === "single" ? "Ubuntu 22.04" : "22.04 + 24.04"}:`);
    console.log(`  install time ${ratio(g.install.seconds, n.install.seconds)}, switch time ${ratio(g.switch.seconds, n.switch.seconds)}`);
    console.log(`  writes: install ${ratio(g.install.requests.writes, n.install.requests.writes)}, switch ${ratio(g.switch.requests.writes, n.switch.requests.writes)}`);
    console.log(`  CPU: install ${ratio(g.install.cpu, n.install.cpu)}, switch ${ratio(g.switch.cpu, n.switch.cpu)}; peak RSS ${ratio(g.peakRss, n.peakRss)}`);
    console.log(`  requests in the steady window ${ratio(g.steady.nonWatch, n.steady.nonWatch)}; most nodes without a Ready driver ${ratio(g.mostWithoutDriver, n.mostWithoutDriver)}`);
  }
}

export const benchmark: Benchmark = {
  name: `operators at scale: gpuop and NVIDIA's GPU Operator, ${NODES} GPU nodes over ${KERNELS} kernels, conventional install then usePrecompiled`,
  async run() {
    if (CPU_PROF) mkdirSync(CPU_PROF, { recursive: true });
    if (STEADY_PROF) mkdirSync(STEADY_PROF, { recursive: true });
    if (SWITCH_PROF) mkdirSync(SWITCH_PROF, { recursive: true });
    if (HEAP_SNAPSHOT) mkdirSync(HEAP_SNAPSHOT, { recursive: true });
    const results: Result[] = [];
    for (const workload of CLUSTERS) {
      for (const operator of OPERATORS) {
        if (operator === "nvidia" && NODES > NVIDIA_MAX_NODES) {
          console.log(`NVIDIA's operator skipped: ${NODES} nodes is above GPUOP_BENCH_NVIDIA_MAX_NODES (${NVIDIA_MAX_NODES}); it did not converge at 3,000 in 11 minutes`);
          continue;
        }
        console.log(`${operator} on ${workload === "single" ? "a single-OS (Ubuntu 22.04)" : "a mixed Ubuntu 22.04/24.04"} cluster:`);
        try {
          results.push(await runOne(operator, workload));
        } catch (err) {
          console.error(`  ${operator} on ${workload} failed: ${(err as Error).stack ?? String(err)}`);
          process.exitCode = 1;
        }
      }
    }
    printTable(results);
  },
};
