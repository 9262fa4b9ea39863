/**
 * Moving GPU nodes between driver pools (one DaemonSet each) without taking
 * every driver down at once. Each DaemonSet selects only the nodes labelled
 * with its pool, so a node changes driver when this label changes. The
 * upgrade planner (upgrade.ts) decides which nodes move now, within
 * `maxUnavailable`, unlike NVIDIA's operator, which deletes every old
 * DaemonSet together; this module gives it the nodes' rollout state.
 */

/** Node label naming the driver pool (DaemonSet) a node is assigned to. */
export const POOL_NODE_LABEL = "gpuop.nvidia.com/driver-pool";

export interface NodeRollout {
  name: string;
  /** The pool the node's label names now, if any. */
  currentPool?: string;
  /** The pool the active policy wants it in; undefined when it should get no driver from gpuop. */
  desiredPool?: string;
  /** Its current pool's driver pod on this node is Ready. */
  driverReady: boolean;
}

/** Resolves a count or percentage ("25%") of `total`, rounding up, at least 1. */
export function resolveMaxUnavailable(value: number | string | undefined, total: number): number {
  if (value === undefined) return Math.max(1, Math.ceil(total * 0.25));
  if (typeof value === "number") return Math.max(1, Math.floor(value));
  const m = /^(\d+)%$/.exec(value.trim());
  if (m) return Math.max(1, Math.ceil((total * Number(m[1])) / 100));
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : 1;
}

/**
 * Whether a driver DaemonSet's nodeSelector still matches a node, its own pool label aside:
 * a node whose kernel or OS changed no longer runs that pool's driver, whatever its label says.
 */
export function poolSelects(nodeSelector: Readonly<Record<string, string>>, nodeLabels: Readonly<Record<string, string>>): boolean {
  return Object.entries(nodeSelector).every(([k, v]) => k === POOL_NODE_LABEL || nodeLabels[k] === v);
}

/**
 * One node's rollout state, given the pool the policy wants for each node (`desired`, by node
 * name); undefined when it neither has nor should have a pool. A held node (its new pool's image
 * is missing) keeps the pool it has while that pool's DaemonSet still selects it.
 */
export function nodeRollout(
  node: { metadata: { name?: string; labels?: Record<string, string> } },
  desired: ReadonlyMap<string, string>,
  hold: ReadonlySet<string>,
  liveSelector: (pool: string) => Readonly<Record<string, string>> | undefined,
  readyDrivers?: ReadonlySet<string>,
): NodeRollout | undefined {
  const name = node.metadata.name ?? "";
  const labels = node.metadata.labels ?? {};
  const currentPool = labels[POOL_NODE_LABEL];
  const selector = currentPool !== undefined && hold.has(name) ? liveSelector(currentPool) : undefined;
  const desiredPool = currentPool !== undefined && selector && poolSelects(selector, labels) ? currentPool : desired.get(name);
  if (currentPool === undefined && desiredPool === undefined) return undefined;
  return {
    name,
    ...(currentPool !== undefined ? { currentPool } : {}),
    ...(desiredPool !== undefined ? { desiredPool } : {}),
    driverReady: currentPool !== undefined && (readyDrivers?.has(`${currentPool}/${name}`) ?? false),
  };
}

/** `<pool>/<node>` of each Ready driver pod; a pod's pool is its pool label, else its DaemonSet. */
export function readyDriverKeys(
  pods: readonly {
    metadata: { labels?: Record<string, string>; ownerReferences?: readonly { kind: string; name: string }[] };
    spec?: { nodeName?: string };
    status?: { conditions?: readonly { type: string; status: string }[] };
  }[],
): Set<string> {
  const keys = new Set<string>();
  for (const p of pods) {
    if (!p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) continue;
    const pool = p.metadata.labels?.[POOL_NODE_LABEL] ?? p.metadata.ownerReferences?.find((o) => o.kind === "DaemonSet")?.name;
    if (pool && p.spec?.nodeName) keys.add(`${pool}/${p.spec.nodeName}`);
  }
  return keys;
}
