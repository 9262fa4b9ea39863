import { RecentNodePatches, type NodeLabelBatch } from "../kube/node-labels.ts";
import { canonicalJson } from "../core/diff.ts";
import type { DriverUpgradePolicySpec } from "../core/policy.ts";
import { DRIVER_APP, DRIVER_APP_LABEL, DRIVER_CONTAINER } from "../core/render.ts";
import { nodeRollout, poolSelects, POOL_NODE_LABEL } from "../core/rollout.ts";
import {
  CORDONED_BY_UPGRADE_ANNOTATION,
  driverPodCurrent,
  FAILED_REASON_ANNOTATION,
  IN_PROGRESS_STATES,
  needsPods,
  recheckAfterMs,
  podsNeededAgain,
  podsToEvict,
  STATE_SINCE_ANNOTATION,
  TEMPLATE_HASH_ANNOTATION,
  UPGRADE_SKIP_LABEL,
  UPGRADE_STATE_LABEL,
  upgradeSettings,
  type NodePod,
  type UpgradeAction,
  type UpgradeNode,
  type UpgradePlan,
  type UpgradeSettings,
} from "../core/upgrade.ts";
import { IncrementalUpgradePlanner } from "../core/upgrade-incremental.ts";
import { gateLabel, GATE_OPEN, OPERAND_LABEL, OPERANDS } from "../core/operands/common.ts";
import { validatorExpected } from "../core/operands/index.ts";
import { isNotFound, KubeApiError, type KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { Logger } from "../kube/log.ts";
import type { PodsByNode } from "../kube/pods-by-node.ts";
import { UNREAD } from "../kube/transforms.ts";
import type { DaemonSet, Node, Pod } from "../kube/types.ts";
import { mapLimit } from "../registry/pool.ts";

/** What one upgrade pass needs from the driver controller's caches. */
export interface UpgradeInputs {
  nodes: readonly Node[];
  /** Pools the policy wants, with their nodes (pools whose image is missing left out). */
  pools: readonly { name: string; nodes: readonly string[] }[];
  /** Nodes whose new pool's image is missing: they keep the pool they have while it still works. */
  hold: ReadonlySet<string>;
  daemonSets: readonly DaemonSet[];
  /** gpuop's driver pods by node (kept by the controller's watch). */
  driverPods: PodIndex;
  /** gpuop's operand pods by node (the operator's cache, shared): validation and the restart read them, no list. */
  operandPods: PodIndex;
  upgradePolicy: DriverUpgradePolicySpec | undefined;
  /** GPU nodes gpuop deploys to: the base of a percentage maxUnavailable. */
  deployableNodes: number;
  /** Other label changes due this pass: written in the same patch as a node's step, and taken out of the batch. */
  labels?: NodeLabelBatch;
  /**
   * The nodes whose node object or pods changed since the last pass (the watches say), and each
   * node as the cache has it now (undefined: gone, or not a node gpuop serves). A pass then looks
   * at those nodes only, unless something every view is made of changed (pools, holds, DaemonSets).
   * Without it, a pass looks at every node of `nodes`.
   */
  changed?: { names: ReadonlySet<string>; node: (name: string) => Node | undefined };
}

/** Pods by the node they run on, with a version that changes whenever one of a node's pods does (PodsByNode). */
export type PodIndex = Pick<PodsByNode, "on" | "version">;

export interface UpgradeOutcome extends UpgradePlan {
  /** Run again after this long: a step waits for pods or a timeout that no watch reports. */
  requeueMs?: number;
}

/** Requests in flight at once for per-node work (pod lists, patches, evictions, events). */
const CONCURRENCY = 16;

/** How often a node in a waiting step is looked at again (its workload pods are not watched). */
const STEP_RECHECK_MS = 2000;

interface PodDetails {
  metadata: Pod["metadata"] & { annotations?: Record<string, string> };
  spec?: {
    nodeName?: string;
    containers?: { image?: string; resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> } }[];
    initContainers?: { resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> } }[];
    volumes?: { emptyDir?: unknown }[];
  };
  status?: Pod["status"] & { containerStatuses?: { name: string; imageID?: string }[] };
}

/**
 * Carries out the upgrade plan (src/core/upgrade.ts): node patches (state
 * label, cordon, pool label), evictions through the Eviction API so
 * PodDisruptionBudgets hold (the DaemonSet controller removes driver pods itself), and one Event on the node
 * per pass that moved it on (the planner chains the steps that are done). Workload pods are listed per node, only for nodes in a step
 * that needs them, rather than watched cluster-wide.
 */
export class UpgradeExecutor {
  private readonly client: KubeClient;
  private readonly events: EventRecorder;
  private readonly log: Logger;
  private readonly namespace: string;
  /** Node patches the cache may not show yet: a pass in between plans the same step again (and its Event). */
  private readonly recent = new RecentNodePatches();
  /** Per node in an eviction step: the stateSince of the step whose list found nothing to evict (see podsNeededAgain). */
  private readonly clearSince = new Map<string, number>();
  /**
   * Each node's view as the planner sees it (pods left out), with what it was worked out from:
   * the cached node object, its pools, its pool's DaemonSet and the versions of its pods. A pass
   * works out again only the nodes where one of these changed: rebuilding every node's view on
   * every pass was most of a pass's CPU at thousands of nodes.
   */
  private readonly observed = new Map<string, ObservedNode>();
  private pass = 0;
  /** The plan over the nodes that can change it (src/core/upgrade-incremental.ts). */
  private readonly planner = new IncrementalUpgradePlanner();
  /** See stableDaemonSets. */
  private daemonSetSpecs = new Map<string, DaemonSet>();
  /** See desiredPools. */
  private desired: { pools: UpgradeInputs["pools"]; byNode: Map<string, string> } | undefined;
  /** What the last pass's views were made of besides each node's own objects (see observe). */
  private lastDesired: ReadonlyMap<string, string> | undefined;
  private lastHold: ReadonlySet<string> = new Set();
  /** The next pass looks at every node: the first, and one after a pass that failed. */
  private resync = true;

  constructor(opts: { client: KubeClient; events: EventRecorder; log: Logger; namespace: string }) {
    this.client = opts.client;
    this.events = opts.events;
    this.log = opts.log;
    this.namespace = opts.namespace;
  }

  async reconcile(input: UpgradeInputs): Promise<UpgradeOutcome> {
    try {
      return await this.reconcileOnce(input);
    } catch (err) {
      // What this pass observed may not have reached the planner: the next pass looks at every node.
      this.resync = true;
      throw err;
    }
  }

  private async reconcileOnce(input: UpgradeInputs): Promise<UpgradeOutcome> {
    const settings = upgradeSettings(input.upgradePolicy, input.deployableNodes);
    const now = Date.now();
    const listed = new Map<string, UpgradeNode>();
    const needing = new Set<string>();
    const { changed, removed } = await this.observe(input, settings, now, listed, needing);
    // Planned: the nodes whose view changed, those in a step that polls or times out, and those the budget may start.
    const plan = this.planner.planChanges(changed, removed, settings, now);
    // A list that found nothing to evict stays good while the node's operands go (podsNeededAgain);
    // it is dropped once the node's step no longer needs its pods.
    for (const n of listed.values()) {
      if (n.stateSince !== undefined && podsToEvict(n.state, n.pods ?? [], settings).length === 0) this.clearSince.set(n.name, n.stateSince);
      else this.clearSince.delete(n.name);
    }
    for (const name of this.clearSince.keys()) if (!needing.has(name)) this.clearSince.delete(name);
    let skipped: ReadonlySet<string>;
    try {
      skipped = await this.act(plan.actions, input.labels);
    } catch (err) {
      // What this pass planned for these nodes may not have been written: planned again next pass.
      this.planner.replan(plan.actions.map((a) => a.node));
      throw err;
    }
    // A step not written because the cache may not show the last write yet: planned again next pass.
    this.planner.replan(skipped);
    // Each node's step after this pass (the one it moved to, else the one it is in), for the nodes in a step.
    const moved = new Map(plan.actions.flatMap((a) => (a.kind === "setState" ? [[a.node, a.state] as const] : [])));
    const steps: { state: string; stateSince?: number }[] = [];
    const step = (n: UpgradeNode) => {
      if (n.skip) return;
      const to = moved.get(n.name);
      if (to !== undefined) steps.push({ state: to, stateSince: now });
      else if (IN_PROGRESS_STATES.has(n.state ?? "")) steps.push({ state: n.state!, ...(n.stateSince !== undefined ? { stateSince: n.stateSince } : {}) });
    };
    for (const name of plan.states.keys()) step(this.observed.get(name)!.view);
    for (const n of this.planner.steppingViews(plan.states)) step(n);
    const recheck = recheckAfterMs(steps, settings.validationTimeoutSeconds, now, STEP_RECHECK_MS);
    // A step not written again because the cache may not show it yet is looked at once the window is over.
    const requeueMs = skipped.size > 0 ? Math.min(recheck ?? Infinity, this.recent.retryInMs) : recheck;
    return { ...plan, ...(requeueMs !== undefined ? { requeueMs } : {}) };
  }

  /**
   * What changed for the planner since the last pass: the views that are new objects (a node's
   * node object, pods, pool or DaemonSet changed, or its step needs its workload pods listed) and
   * the nodes gone. `listed` gets the nodes whose pods were listed this pass, `needing` those whose
   * step needs their pods.
   */
  private async observe(input: UpgradeInputs, settings: UpgradeSettings, now: number, listed: Map<string, UpgradeNode>, needing = new Set<string>()): Promise<{ changed: UpgradeNode[]; removed: string[] }> {
    const { byName: dsByName, changed: dsChanged } = this.stableDaemonSets(input.daemonSets);
    const desired = this.desiredPools(input.pools);
    // Every node is looked at when something all views are made of changed, or the watches' account
    // of changes cannot be trusted (the first pass, one after a failure, a caller that gives none).
    const everything = this.resync || !input.changed || dsChanged || desired !== this.lastDesired || !sameMembers(input.hold, this.lastHold);
    this.resync = false;
    this.lastDesired = desired;
    this.lastHold = input.hold;
    const pass = ++this.pass;
    const changed: UpgradeNode[] = [];
    const removed: string[] = [];
    const liveSelector = (pool: string) => {
      const d = dsByName.get(pool);
      return d && selectorOf(d);
    };
    const look = (name: string, node: Node | undefined) => {
      const kept = this.observed.get(name);
      if (kept?.pass === pass) return;
      const view = node && this.viewOf(name, node, kept, desired, dsByName, liveSelector, input);
      if (!view) {
        if (kept) {
          this.observed.delete(name);
          removed.push(name);
        }
        return;
      }
      view.pass = pass;
      if (view !== kept) changed.push(view.view);
    };
    const named = input.changed?.node;
    if (everything) {
      for (const node of input.nodes) {
        const name = node.metadata.name ?? "";
        look(name, named ? named(name) : node);
      }
      // Not in the list the pass started from: gone, unless the cache has it by now.
      for (const [name, o] of this.observed) if (o.pass !== pass) look(name, named?.(name));
    }
    if (input.changed) for (const name of input.changed.names) look(name, input.changed.node(name));
    // One small list per node whose step needs its workload pods (an eviction step, or waiting for
    // jobs), once per pass, a few at a time. The operand pods (the validator) come from the cache.
    // A node whose last list found nothing to evict, waiting for its operands to go, is not listed
    // again: the list stands (empty of what the step acts on) until they are gone (podsNeededAgain).
    // Such nodes are in a step, so among those changed or the planner's busy ones. The views are
    // shared between passes: a node's pods go on a copy.
    const candidates = new Set(changed.map((n) => n.name));
    for (const name of this.planner.busyNames()) candidates.add(name);
    const withPods: UpgradeNode[] = [];
    for (const name of candidates) {
      const view = this.observed.get(name)?.view;
      if (view && needsPods(view, settings)) withPods.push(view);
    }
    for (const n of withPods) needing.add(n.name);
    const withList = await mapLimit(withPods, CONCURRENCY, async (n) => {
      if (!podsNeededAgain(n, settings, now, this.clearSince.get(n.name))) return { ...n, pods: [] };
      const copy = { ...n, pods: await this.podsOn(n.name) };
      listed.set(n.name, copy);
      return copy;
    });
    const copies = new Map(withList.map((n) => [n.name, n]));
    return { changed: [...changed.filter((n) => !copies.has(n.name)), ...copies.values()], removed };
  }

  /**
   * A node's entry, kept when its node object, the desired pools, its hold (now and then), its
   * pool's DaemonSet and its pods are the same (its rollout is not worked out again: that was a
   * third of the walk at thousands of nodes); a new entry when its view changed. Undefined for a
   * node with no pool and none wanted.
   */
  private viewOf(name: string, node: Node, kept: ObservedNode | undefined, desired: ReadonlyMap<string, string>, dsByName: ReadonlyMap<string, DaemonSet>, liveSelector: (pool: string) => Record<string, string> | undefined, input: UpgradeInputs): ObservedNode | undefined {
    if (
      kept && kept.node === node && kept.desired === desired && !kept.held && !input.hold.has(name) &&
      kept.ds === (kept.currentPool !== undefined ? dsByName.get(kept.currentPool) : undefined) &&
      kept.driverVersion === input.driverPods.version(name) && kept.operandVersion === input.operandPods.version(name)
    ) return kept;
    const r = nodeRollout(node, desired, input.hold, liveSelector);
    if (!r) return undefined;
    const { currentPool, desiredPool } = r;
    const ds = currentPool !== undefined ? dsByName.get(currentPool) : undefined;
    const driverVersion = input.driverPods.version(name);
    const operandVersion = input.operandPods.version(name);
    const held = input.hold.has(name);
    if (!kept || kept.node !== node || kept.ds !== ds || kept.desiredPool !== desiredPool || kept.driverVersion !== driverVersion || kept.operandVersion !== operandVersion) {
      const entry: ObservedNode = { node, ds, currentPool, desiredPool, desired, held, driverVersion, operandVersion, pass: 0, view: upgradeNodeView(r, node, ds, input) };
      this.observed.set(name, entry);
      return entry;
    }
    kept.desired = desired;
    kept.held = held;
    return kept;
  }

  /**
   * The DaemonSets by name, each kept as the object last seen while its spec is the same (uid,
   * generation, deletion): its status moves with every pod that becomes Ready, and views, which
   * read only its spec, would otherwise be worked out again for every node of the pool on each pass.
   */
  private stableDaemonSets(daemonSets: readonly DaemonSet[]): { byName: Map<string, DaemonSet>; changed: boolean } {
    const out = new Map<string, DaemonSet>();
    let changed = daemonSets.length !== this.daemonSetSpecs.size;
    for (const d of daemonSets) {
      const name = d.metadata.name ?? "";
      const kept = this.daemonSetSpecs.get(name);
      const same = kept !== undefined && kept.metadata.uid === d.metadata.uid && kept.metadata.generation === d.metadata.generation && kept.metadata.deletionTimestamp === d.metadata.deletionTimestamp;
      out.set(name, same ? kept : d);
      if (!same) changed = true;
    }
    this.daemonSetSpecs = out;
    return { byName: out, changed };
  }

  /** Each node's desired pool; worked out again only when a pool or its node list is another object than last pass. */
  private desiredPools(pools: UpgradeInputs["pools"]): ReadonlyMap<string, string> {
    const kept = this.desired;
    if (kept && kept.pools.length === pools.length && kept.pools.every((p, i) => p === pools[i] || (p.name === pools[i]!.name && p.nodes === pools[i]!.nodes))) return kept.byNode;
    const byNode = new Map<string, string>();
    for (const p of pools) for (const n of p.nodes) byNode.set(n, p.name);
    this.desired = { pools: [...pools], byNode };
    return byNode;
  }

  /**
   * The pods on a node that an eviction or wait step may act on, all namespaces. Left out by the
   * API server: finished pods (no step waits for or evicts them) and gpuop's own driver and
   * operand pods, wherever they run (no step evicts them or waits for them; the caches have
   * them: UpgradeNode.driver and operandPods). They were most of each list's bytes: six pods of
   * several kilobytes on every node in a step, read twice per node in an upgrade.
   */
  private async podsOn(node: string): Promise<NodePod[]> {
    // Workload pods' managedFields (often half of a pod's text) are never read here.
    const { items } = await this.client.list<PodDetails>("/api/v1/pods", { fieldSelector: nodePodsFieldSelector(node), labelSelector: NODE_PODS_LABEL_SELECTOR }, { unread: UNREAD });
    return items.map((p) => {
      const owners = p.metadata.ownerReferences ?? [];
      const resources = [...(p.spec?.containers ?? []), ...(p.spec?.initContainers ?? [])].flatMap((c) => [...Object.keys(c.resources?.requests ?? {}), ...Object.keys(c.resources?.limits ?? {})]);
      return {
        namespace: p.metadata.namespace ?? "",
        name: p.metadata.name ?? "",
        labels: p.metadata.labels ?? {},
        usesGpu: resources.some((r) => r.startsWith("nvidia.com/")),
        // Static (mirror) pods cannot be evicted either; kubectl drain leaves them too.
        daemonSet: owners.some((o) => o.controller && o.kind === "DaemonSet") || p.metadata.annotations?.["kubernetes.io/config.mirror"] !== undefined,
        controlled: owners.some((o) => o.controller === true),
        emptyDir: (p.spec?.volumes ?? []).some((v) => v.emptyDir !== undefined),
        finished: p.status?.phase === "Succeeded" || p.status?.phase === "Failed",
        terminating: p.metadata.deletionTimestamp !== undefined,
        driver: p.metadata.namespace === this.namespace && p.metadata.labels?.[DRIVER_APP_LABEL] === DRIVER_APP,
        ...(p.metadata.namespace === this.namespace && p.metadata.labels?.[OPERAND_LABEL] !== undefined ? { operand: p.metadata.labels["app"] ?? "" } : {}),
        ready: p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true,
      };
    });
  }

  /** Carries out the actions; returns the nodes whose patch was skipped as already sent (see RecentNodePatches). */
  private async act(actions: readonly UpgradeAction[], labels?: NodeLabelBatch): Promise<ReadonlySet<string>> {
    // Every node with an action was observed this pass.
    const nodeByName = { get: (name: string) => this.observed.get(name)?.node };
    const patches = new Map<string, { labels: Record<string, string | null>; annotations: Record<string, string | null>; unschedulable?: boolean | null }>();
    const patchOf = (node: string) => {
      let p = patches.get(node);
      if (!p) patches.set(node, (p = { labels: {}, annotations: {} }));
      return p;
    };
    // A node that has a step to write carries the pass's other label changes in the same patch.
    const patchKinds = new Set(["setState", "clearState", "cordon", "uncordon", "movePool"]);
    const stepNodes = new Set(actions.filter((a) => patchKinds.has(a.kind)).map((a) => a.node));
    for (const node of stepNodes) {
      const due = labels?.take(node);
      if (due) Object.assign(patchOf(node).labels, due);
    }
    const stamp = new Date().toISOString();
    // Evictions first: a state that says they happened is written only after they did.
    const evicted = new Map<string, { why: string; pods: string[] }>();
    await mapLimit(actions.filter((a) => a.kind === "evict"), CONCURRENCY, async (a) => {
      if (a.kind !== "evict" || !(await this.evict(a.namespace, a.pod, a.node))) return;
      const e = evicted.get(a.node) ?? { why: a.why ?? "GPU pods", pods: [] };
      e.pods.push(`${a.namespace}/${a.pod}`);
      evicted.set(a.node, e);
    });
    for (const a of actions) {
      switch (a.kind) {
        case "setState":
          patchOf(a.node).labels[UPGRADE_STATE_LABEL] = a.state;
          patchOf(a.node).annotations[STATE_SINCE_ANNOTATION] = stamp;
          patchOf(a.node).annotations[FAILED_REASON_ANNOTATION] = a.reason?.slice(0, 1000) ?? null;
          break;
        case "clearState":
          patchOf(a.node).labels[UPGRADE_STATE_LABEL] = null;
          patchOf(a.node).annotations[STATE_SINCE_ANNOTATION] = null;
          patchOf(a.node).annotations[FAILED_REASON_ANNOTATION] = null;
          break;
        case "cordon":
          patchOf(a.node).unschedulable = true;
          patchOf(a.node).annotations[CORDONED_BY_UPGRADE_ANNOTATION] = "true";
          break;
        case "uncordon":
          patchOf(a.node).unschedulable = null;
          patchOf(a.node).annotations[CORDONED_BY_UPGRADE_ANNOTATION] = null;
          break;
        case "movePool":
          patchOf(a.node).labels[POOL_NODE_LABEL] = a.pool;
          break;
        case "closeGates":
          for (const g of a.gates) patchOf(a.node).labels[g] = null;
          break;
      }
    }
    // One patch per node, so the state and what it records (cordon, pool) change together.
    const repeated = new Set<string>();
    await mapLimit([...patches], CONCURRENCY, async ([node, p]) => {
      const body: Record<string, unknown> = { metadata: { labels: p.labels, ...(Object.keys(p.annotations).length > 0 ? { annotations: p.annotations } : {}) } };
      if (p.unschedulable !== undefined) body.spec = { unschedulable: p.unschedulable };
      // The same step planned again from a node the cache shows from before its patch: neither the
      // patch nor its Event again (the time the step started is not part of what is compared).
      const { [STATE_SINCE_ANNOTATION]: _since, ...annotations } = p.annotations;
      const key = canonicalJson({ labels: p.labels, annotations, unschedulable: p.unschedulable });
      if (this.recent.inFlight(node, key, nodeByName.get(node)?.metadata.resourceVersion)) {
        repeated.add(node);
        return;
      }
      try {
        // The answer is not parsed (a whole Node): the window alone says when the cache may show it.
        await this.client.mergePatch(`/api/v1/nodes/${node}`, body, { discardBody: true });
        this.recent.record(node, key, undefined);
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
      if (p.labels[POOL_NODE_LABEL] !== undefined) this.log.info("moved node to driver pool", { node, pool: p.labels[POOL_NODE_LABEL] });
      if (p.labels[UPGRADE_STATE_LABEL] !== undefined && p.labels[UPGRADE_STATE_LABEL] !== "upgrade-done") this.log.info("driver upgrade step", { node, state: p.labels[UPGRADE_STATE_LABEL] });
    });
    // An eviction the API accepted is something a user acts on: one Event per node and pass naming
    // the pods (a refused one is retried each pass until the step's timeout, and says nothing yet).
    const evictionEvents = [...evicted].map(([node, e]) => ({ kind: "event" as const, node, type: "Normal" as const, reason: "DriverUpgradePodsEvicted", message: `${e.why === "drain" ? "node drained for the driver upgrade" : "GPU pods evicted for the driver upgrade"}: ${e.pods.sort().join(", ")}` }));
    // Sent in the background (EventRecorder): the pass does not wait for them.
    for (const a of [...evictionEvents, ...actions.filter((a) => !repeated.has(a.node))]) {
      if (a.kind !== "event") continue;
      const node = nodeByName.get(a.node);
      const ref = { apiVersion: "v1", kind: "Node", metadata: { name: a.node, ...(node?.metadata.uid ? { uid: node.metadata.uid } : {}) } };
      void this.events.record(ref, a.type, a.reason, a.message);
    }
    return repeated;
  }

  /**
   * Evicts through the Eviction API; a PodDisruptionBudget's 429 leaves the pod for the next pass
   * (the step's timeout decides). True when the API accepted the eviction.
   */
  private async evict(namespace: string, pod: string, node: string): Promise<boolean> {
    try {
      await this.client.create(`/api/v1/namespaces/${namespace}/pods/${pod}/eviction`, { apiVersion: "policy/v1", kind: "Eviction", metadata: { name: pod, namespace } });
      this.log.info("evicted pod for driver upgrade", { node, pod: `${namespace}/${pod}` });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      if (err instanceof KubeApiError && err.status === 429) {
        this.log.info("eviction refused, will retry", { node, pod: `${namespace}/${pod}`, reason: err.message });
        return false;
      }
      throw err;
    }
  }

}

const GATES = OPERANDS.map(gateLabel);

/** A node's view and what it was worked out from (see UpgradeExecutor.observed). */
interface ObservedNode {
  node: Node;
  ds: DaemonSet | undefined;
  /** The node's pool label (the node object stands for it), and the pool the policy wants. */
  currentPool: string | undefined;
  desiredPool: string | undefined;
  /** The desired-pools map the view was last checked against, and whether the node was held then. */
  desired: ReadonlyMap<string, string>;
  held: boolean;
  driverVersion: number;
  operandVersion: number;
  /** The last pass that looked at the node. */
  pass: number;
  view: UpgradeNode;
}

/** Two sets with the same members. */
function sameMembers(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

const selectorOf = (d: DaemonSet) => (d.spec?.template?.spec as { nodeSelector?: Record<string, string> } | undefined)?.nodeSelector ?? {};

/** One node as the planner sees it, its workload pods left out (frozen: views are shared between passes). */
function upgradeNodeView(r: { name: string; currentPool?: string; desiredPool?: string }, node: Node, ds: DaemonSet | undefined, input: UpgradeInputs): UpgradeNode {
  const labels = node.metadata.labels ?? {};
  const annotations = node.metadata.annotations ?? {};
  const driverPods = input.driverPods.on(r.name);
  const pod = r.currentPool !== undefined ? driverPodOn(driverPods, r.name, r.currentPool) : undefined;
  const since = Date.parse(annotations[STATE_SINCE_ANNOTATION] ?? "");
  return Object.freeze({
    name: r.name,
    ...(labels[UPGRADE_STATE_LABEL] !== undefined ? { state: labels[UPGRADE_STATE_LABEL] } : {}),
    skip: labels[UPGRADE_SKIP_LABEL] === "true",
    unschedulable: node.spec?.unschedulable === true,
    cordonedByUpgrade: annotations[CORDONED_BY_UPGRADE_ANNOTATION] === "true",
    ...(Number.isNaN(since) ? {} : { stateSince: since }),
    ...(annotations[FAILED_REASON_ANNOTATION] ? { failedReason: annotations[FAILED_REASON_ANNOTATION] } : {}),
    ...(r.currentPool !== undefined ? { currentPool: r.currentPool } : {}),
    ...(r.desiredPool !== undefined ? { desiredPool: r.desiredPool } : {}),
    currentPoolLive: ds !== undefined && !ds.metadata.deletionTimestamp && poolSelects(selectorOf(ds), labels),
    ...(pod && ds ? { driver: driverView(pod as PodDetails, ds) } : {}),
    driverPods: driverPods.length,
    ...(validatorExpected(labels, annotations) ? { validatorExpected: true } : {}),
    operandPods: Object.freeze(input.operandPods.on(r.name).map(operandPodView)),
    openGates: GATES.filter((g) => labels[g] === GATE_OPEN),
  });
}

/** An operand pod from the operator's cache, as the planner sees pods. */
function operandPodView(p: Pod): NodePod {
  return {
    namespace: p.metadata.namespace ?? "",
    name: p.metadata.name ?? "",
    labels: p.metadata.labels ?? {},
    usesGpu: false,
    daemonSet: true,
    controlled: true,
    emptyDir: false,
    finished: p.status?.phase === "Succeeded" || p.status?.phase === "Failed",
    terminating: p.metadata.deletionTimestamp !== undefined,
    driver: false,
    operand: p.metadata.labels?.["app"] ?? "",
    ready: p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true,
  };
}

/** The pods on a node that are not finished (see UpgradeExecutor.podsOn). */
export const nodePodsFieldSelector = (node: string) => `spec.nodeName=${node},status.phase!=Succeeded,status.phase!=Failed`;
/** Neither a driver pod nor an operand pod of gpuop's (see UpgradeExecutor.podsOn). */
export const NODE_PODS_LABEL_SELECTOR = `${DRIVER_APP_LABEL}!=${DRIVER_APP},!${OPERAND_LABEL}`;

/** The driver pod of `pool` on `node`; a live one before one being deleted. */
function driverPodOn(pods: readonly Pod[], node: string, pool: string): Pod | undefined {
  const mine = pods.filter((p) => p.spec?.nodeName === node && (p.metadata.labels?.[POOL_NODE_LABEL] ?? p.metadata.ownerReferences?.find((o) => o.kind === "DaemonSet")?.name) === pool);
  return mine.find((p) => !p.metadata.deletionTimestamp) ?? mine[0];
}

function driverView(pod: PodDetails, ds: DaemonSet) {
  const template = ds.spec?.template as { metadata?: { annotations?: Record<string, string> }; spec?: { containers?: { name: string; image?: string }[] } } | undefined;
  const wanted = template?.spec?.containers?.find((c) => c.name === DRIVER_CONTAINER) ?? template?.spec?.containers?.[0];
  const container = (pod.spec?.containers as { name?: string; image?: string }[] | undefined)?.find((c) => c.name === DRIVER_CONTAINER) ?? pod.spec?.containers?.[0];
  const imageID = pod.status?.containerStatuses?.find((c) => c.name === DRIVER_CONTAINER)?.imageID;
  const templateHash = template?.metadata?.annotations?.[TEMPLATE_HASH_ANNOTATION];
  return {
    namespace: pod.metadata.namespace ?? "",
    name: pod.metadata.name ?? "",
    ready: pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true,
    current: driverPodCurrent(
      {
        ...(pod.metadata.labels ? { labels: pod.metadata.labels } : {}),
        ...(pod.metadata.annotations ? { annotations: pod.metadata.annotations } : {}),
        ...(container?.image ? { image: container.image } : {}),
        ...(imageID ? { imageID } : {}),
      },
      { ...(ds.metadata.generation !== undefined ? { generation: ds.metadata.generation } : {}), ...(templateHash ? { templateHash } : {}), ...(wanted?.image ? { image: wanted.image } : {}) },
    ),
    terminating: pod.metadata.deletionTimestamp !== undefined,
  };
}
