import { FALLBACK_REASON_ANNOTATION } from "./fallback.ts";
import { classifyNodes } from "./gpu-node.ts";
import { poolSelects, POOL_NODE_LABEL } from "./rollout.ts";

/** One GPU node's driver, as `gpuop status` shows it. */
export interface NodeDriverRow {
  node: string;
  kernel: string;
  osTag: string;
  /** "fallback": the conventional driver of a precompiled policy, where the precompiled one is missing or cannot be pulled. */
  mode: "precompiled" | "conventional" | "fallback" | "none";
  daemonSet: string;
  /** The image the node's driver pod runs (its spec, with the digest the runtime resolved when the pod reports one). */
  image: string;
  /** The image its pool's DaemonSet wants now. */
  wantedImage: string;
  /** nvidia.com/gpu-driver-upgrade-state, or "" when the node has none. */
  upgradeState: string;
  pod: string;
  phase: string;
  problem?: string;
  /** Why the node is on the fallback or has no driver (the operator's note on the node). */
  reason?: string;
}

interface Obj {
  metadata: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: { kind: string; name: string }[] };
}
interface DaemonSetLike extends Obj {
  spec?: { template?: { spec?: Record<string, unknown> } };
}
interface PodLike extends Obj {
  spec?: { nodeName?: string; containers?: { name: string; image: string }[] };
  metadata: Obj["metadata"] & { deletionTimestamp?: string };
  status?: { phase?: string; conditions?: { type: string; status: string }[]; containerStatuses?: { name?: string; imageID?: string; state?: Record<string, { reason?: string }> }[] };
}

/** What a driver pod runs: its container's image, pinned to the digest the runtime pulled when known. */
function runningImage(pod: PodLike | undefined): string {
  const c = pod?.spec?.containers?.find((x) => x.name === "nvidia-driver-ctr") ?? pod?.spec?.containers?.[0];
  if (!c) return "";
  const digest = /(sha256:[0-9a-f]{64})$/.exec(pod?.status?.containerStatuses?.find((x) => x.name === c.name)?.imageID ?? "")?.[1];
  return digest && !c.image.includes("@") ? `${c.image}@${digest}` : c.image;
}

const image = (ds: DaemonSetLike | undefined) => {
  const containers = (ds?.spec?.template?.spec?.containers ?? []) as { name: string; image: string }[];
  return containers.find((c) => c.name === "nvidia-driver-ctr")?.image ?? containers[0]?.image ?? "";
};

/** A pod's phase, refined the way kubectl shows it (a waiting reason such as ImagePullBackOff wins). */
function podPhase(pod: PodLike): string {
  for (const c of pod.status?.containerStatuses ?? []) {
    const reason = c.state?.waiting?.reason;
    if (reason) return reason;
  }
  const ready = pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
  const phase = pod.status?.phase ?? "Pending";
  return phase === "Running" && !ready ? "Running (not ready)" : phase;
}

/** Joins nodes, DaemonSets and driver pods into one row per GPU node, sorted by node name. */
export function driverStatusRows(nodes: Obj[], daemonSets: DaemonSetLike[], pods: PodLike[]): NodeDriverRow[] {
  const { gpuNodes, problems } = classifyNodes(nodes as Parameters<typeof classifyNodes>[0]);
  const dsByName = new Map(daemonSets.map((d) => [d.metadata.name ?? "", d]));
  const nodeLabels = new Map(nodes.map((n) => [n.metadata.name ?? "", n.metadata.labels ?? {}]));
  const nodeAnnotations = new Map(nodes.map((n) => [n.metadata.name ?? "", n.metadata.annotations ?? {}]));
  const podByNode = new Map<string, PodLike>();
  // A node's live pod of its own pool wins over one being deleted or one of the pool it left.
  const rank = (p: PodLike) => (p.metadata.deletionTimestamp ? 0 : 2) + (p.metadata.labels?.[POOL_NODE_LABEL] === nodeLabels.get(p.spec?.nodeName ?? "")?.[POOL_NODE_LABEL] ? 1 : 0);
  for (const p of pods) {
    const n = p.spec?.nodeName;
    if (!n) continue;
    const had = podByNode.get(n);
    if (!had || rank(p) > rank(had)) podByNode.set(n, p);
  }
  const rows: NodeDriverRow[] = gpuNodes.map((n) => {
    const labels = nodeLabels.get(n.name) ?? {};
    const pool = labels[POOL_NODE_LABEL] ?? "";
    const assigned = dsByName.get(pool);
    // A DaemonSet that no longer selects the node (its kernel changed) runs no driver there, whatever the label says.
    const selector = (assigned?.spec?.template?.spec as { nodeSelector?: Record<string, string> } | undefined)?.nodeSelector;
    const ds = assigned && (!selector || poolSelects(selector, labels)) ? assigned : undefined;
    const reason = nodeAnnotations.get(n.name)?.[FALLBACK_REASON_ANNOTATION];
    const pod = podByNode.get(n.name);
    const precompiled = ds?.metadata.labels?.["nvidia.com/precompiled"];
    return {
      node: n.name,
      kernel: n.kernel,
      osTag: n.osTag,
      mode: ds ? (precompiled === "true" ? "precompiled" : reason?.startsWith("fallback") ? "fallback" : "conventional") : "none",
      daemonSet: ds ? pool : "",
      image: runningImage(pod),
      wantedImage: image(ds),
      upgradeState: nodeLabels.get(n.name)?.["nvidia.com/gpu-driver-upgrade-state"] ?? "",
      pod: pod?.metadata.name ?? "",
      phase: pod ? podPhase(pod) : n.deployable ? "NoPod" : `not deployed (nvidia.com/gpu.deploy.driver=${n.deploy})`,
      ...(reason ? { reason } : {}),
    };
  });
  for (const p of problems) {
    rows.push({ node: p.name, kernel: "", osTag: "", mode: "none", daemonSet: "", image: "", wantedImage: "", upgradeState: "", pod: "", phase: "Problem", problem: p.problem });
  }
  return rows.sort((a, b) => a.node.localeCompare(b.node));
}
