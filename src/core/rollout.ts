/**
 * Moving GPU nodes between driver pools (one DaemonSet each) without taking
 * every driver down at once. Each DaemonSet selects only the nodes labelled
 * with its pool, so a node changes driver when this label changes; the
 * controller moves at most `maxUnavailable` nodes with a working driver at a
 * time, unlike NVIDIA's operator, which deletes every old DaemonSet together.
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

export interface RolloutPlan {
  /** Label changes to make now: pool name, or null to remove the label. */
  moves: Map<string, string | null>;
  /** Nodes that must move but wait for others to become ready. */
  waiting: string[];
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
 * Plans which nodes change pool now. A move is free when the node has no
 * working driver to lose (new node, pool gone, driver not ready); otherwise it
 * spends budget, which is `maxUnavailable` minus the nodes already without a
 * ready driver.
 */
export function planRollout(nodes: NodeRollout[], existingPools: ReadonlySet<string>, maxUnavailable: number): RolloutPlan {
  const moves = new Map<string, string | null>();
  const waiting: string[] = [];
  let unavailable = 0;
  const costly: NodeRollout[] = [];
  for (const n of [...nodes].sort((a, b) => a.name.localeCompare(b.name))) {
    if (n.currentPool === n.desiredPool) {
      if (n.desiredPool !== undefined && !n.driverReady) unavailable++;
      continue;
    }
    const hasWorkingDriver = n.currentPool !== undefined && existingPools.has(n.currentPool) && n.driverReady;
    if (!hasWorkingDriver || n.desiredPool === undefined) {
      moves.set(n.name, n.desiredPool ?? null);
      if (n.desiredPool !== undefined) unavailable++;
    } else {
      costly.push(n);
    }
  }
  let budget = maxUnavailable - unavailable;
  for (const n of costly) {
    if (budget > 0) {
      moves.set(n.name, n.desiredPool ?? null);
      budget--;
    } else {
      waiting.push(n.name);
    }
  }
  return { moves, waiting };
}

/**
 * Whether a driver DaemonSet's nodeSelector still matches a node, its own pool label aside:
 * a node whose kernel or OS changed no longer runs that pool's driver, whatever its label says.
 */
export function poolSelects(nodeSelector: Readonly<Record<string, string>>, nodeLabels: Readonly<Record<string, string>>): boolean {
  return Object.entries(nodeSelector).every(([k, v]) => k === POOL_NODE_LABEL || nodeLabels[k] === v);
}
