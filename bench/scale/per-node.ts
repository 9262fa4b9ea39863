// Accounts for every node patch, Event and pod list of a benchmark run, per phase
// and per node, from gpuop's log with its requests traced (GPUOP_BENCH_OPERATOR_LOG=1
// sets GPUOP_TRACE_REQUESTS=1) and the phases' bounds (phases.json).
//   node bench/scale/per-node.ts .tmp/bench/<name>-gpuop-single
import { readFileSync } from "node:fs";
import { join } from "node:path";

interface Traced { ts: string; msg: string; verb: string; path: string; query?: Record<string, unknown>; body?: Record<string, unknown> }

const dir = process.argv[2];
if (!dir) throw new Error("usage: node bench/scale/per-node.ts <work dir>");
const phases = JSON.parse(readFileSync(join(dir, "phases.json"), "utf8")) as Record<string, [number, number]>;
const requests: Traced[] = [];
for (const line of readFileSync(join(dir, "operator.log"), "utf8").split("\n")) {
  if (!line.startsWith("{")) continue;
  try {
    const r = JSON.parse(line) as Traced;
    if (r.msg === "request") requests.push(r);
  } catch {
    // not JSON
  }
}

/** What a node patch changes, as a short key: labels and annotations by name (values for the state), cordon. */
function patchKind(body: Record<string, unknown> | undefined): string {
  const meta = (body?.metadata ?? {}) as { labels?: Record<string, string | null>; annotations?: Record<string, string | null> };
  const parts: string[] = [];
  for (const [k, v] of Object.entries(meta.labels ?? {})) {
    const short = k.replace(/^nvidia\.com\/gpu\.deploy\./, "deploy.").replace(/^gpuop\.nvidia\.com\/gate\./, "gate.").replace(/^nvidia\.com\//, "");
    if (k === "nvidia.com/gpu-driver-upgrade-state") parts.push(`state=${v}`);
    else if (k.startsWith("gpuop.nvidia.com/gate.")) parts.push(`${short}=${v ?? "closed"}`);
    else if (k.startsWith("nvidia.com/gpu.deploy.")) parts.push(v === null ? `-${short}` : short);
    else if (k === "gpuop.nvidia.com/driver-pool") parts.push("pool");
    else parts.push(v === null ? `-${short}` : short);
  }
  for (const [k, v] of Object.entries(meta.annotations ?? {})) {
    if (k === "gpuop.nvidia.com/operands-driver-pod") parts.push(v === null ? "-operands-driver-pod" : "operands-driver-pod");
  }
  const spec = body?.spec as { unschedulable?: boolean | null } | undefined;
  if (spec && "unschedulable" in spec) parts.push(spec.unschedulable ? "cordon" : "uncordon");
  const deploys = parts.filter((p) => p.startsWith("deploy.") && p !== "deploy.driver");
  const rest = parts.filter((p) => !(p.startsWith("deploy.") && p !== "deploy.driver"));
  return [...rest, ...(deploys.length > 0 ? [`${deploys.length} operand deploy labels`] : [])].join(" + ");
}

for (const [phase, [from, to]] of Object.entries(phases)) {
  const inPhase = requests.filter((r) => {
    const at = Date.parse(r.ts);
    return at >= from && at < to;
  });
  const nodes = new Set<string>();
  const kinds = new Map<string, number>();
  const reasons = new Map<string, number>();
  const lists = new Map<string, number>();
  let patches = 0;
  let events = 0;
  let podLists = 0;
  const other = new Map<string, number>();
  for (const r of inPhase) {
    const nodePatch = /^\/api\/v1\/nodes\/([^/]+)$/.exec(r.path);
    if (r.verb === "patch" && nodePatch) {
      patches++;
      nodes.add(nodePatch[1]!);
      const k = patchKind(r.body);
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    } else if (r.verb === "create" && r.path.endsWith("/events")) {
      events++;
      const body = r.body as { reason?: string; involvedObject?: { kind?: string } };
      const k = `${body.involvedObject?.kind} ${body.reason}`;
      reasons.set(k, (reasons.get(k) ?? 0) + 1);
    } else if (r.verb === "list" && r.path === "/api/v1/pods") {
      podLists++;
      const node = String(r.query?.fieldSelector ?? "").replace("spec.nodeName=", "");
      lists.set(node, (lists.get(node) ?? 0) + 1);
    } else {
      const k = `${r.verb} ${r.path.replace(/\/[^/]*[0-9][^/]*$/, "/…")}`;
      other.set(k, (other.get(k) ?? 0) + 1);
    }
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  const n = Math.max(nodes.size, 1);
  console.log(`\n== ${phase} (${((to - from) / 1000).toFixed(1)} s): ${patches} node patches on ${nodes.size} nodes (${(patches / n).toFixed(2)} per patched node), ${events} Events, ${podLists} pod lists over ${lists.size} nodes`);
  console.log("  node patches by what they change:");
  for (const [k, c] of sorted(kinds)) console.log(`    ${String(c).padStart(6)}  ${k}`);
  console.log("  Events by object and reason:");
  for (const [k, c] of sorted(reasons)) console.log(`    ${String(c).padStart(6)}  ${k}`);
  const perNode = new Map<number, number>();
  for (const c of lists.values()) perNode.set(c, (perNode.get(c) ?? 0) + 1);
  console.log(`  pod lists per listed node: ${[...perNode].sort((a, b) => a[0] - b[0]).map(([c, k]) => `${k} nodes x${c}`).join(", ")}`);
  console.log("  other requests:");
  for (const [k, c] of sorted(other).slice(0, 15)) console.log(`    ${String(c).padStart(6)}  ${k}`);
}
