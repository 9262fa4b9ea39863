// What the driver controller keeps from one pass to the next, so that a pass works out again only
// what changed: each node's view (its GPU facts and the labels it lacks), the validation and
// rendering of the policy for the fleet's facts, and the indexes the watches keep (pods by node,
// the fallback's marks). All of it is derived from the caches and rebuilt by a restart; none of it
// is state that must survive one.
import { classifyGpuNode, desiredNodeLabels, isGpuNode, splitClassifications, type GpuNodeClassification, type GpuNodeFacts, type GpuNodeOptions, type GpuNodeProblem } from "../core/gpu-node.ts";
import { deepFreeze, sameStringMap } from "../core/diff.ts";
import { FALLBACK_REASON_ANNOTATION, PULL_FAILED_ANNOTATION, pullFailure } from "../core/fallback.ts";
import { gateLabel, OPERANDS } from "../core/operands/common.ts";
import type { NormalizedClusterPolicy } from "../core/policy.ts";
import { DRIVER_CONTAINER, PRECOMPILED_LABEL, type DriverDaemonSet, type renderDriverDaemonSets } from "../core/render.ts";
import type { RepositoryAllowList } from "../core/security.ts";
import { OPERANDS_STOP_STATES, UPGRADE_STATE_LABEL } from "../core/upgrade.ts";
import { POOL_NODE_LABEL } from "../core/rollout.ts";
import { validatePolicy, type PolicyValidation } from "../core/validate.ts";
import type { ChangeType } from "../kube/informer.ts";
import { PodsByNode } from "../kube/pods-by-node.ts";
import type { DaemonSet, Node, Pod } from "../kube/types.ts";

type Rendered = ReturnType<typeof renderDriverDaemonSets>;

/** A node as a pass sees it (see DriverMemory.nodeView). */
export interface NodeView {
  /** Absent for a node that is not a GPU node. */
  classified?: GpuNodeClassification;
  /** desiredNodeLabels: the GPU labels gpuop still has to set. */
  labels: Record<string, string | null>;
}

export class DriverMemory {
  /** gpuop's driver and operand pods by node, kept by the pod watches: the upgrade's per-node views read them. */
  readonly driverPods = new PodsByNode();
  readonly operandPods = new PodsByNode();
  private readonly gpuNodeOptions: GpuNodeOptions;
  private readonly allowedRepositories: RepositoryAllowList | undefined;
  /**
   * What a pass needs of each node, kept with the cached object it was worked out from. The
   * informer replaces a node's object on every change and never edits one in place, so a pass
   * works out only the nodes that changed since the last.
   */
  private readonly nodeViews = new WeakMap<Node, NodeView>();
  /** The last GPU facts of each node: kept as the same object while they do not change. */
  private readonly classifiedByName = new Map<string, GpuNodeClassification>();
  /** The last validation and rendering, with the policy and facts they came from (see fleetChecks). */
  private fleet: { policy: NormalizedClusterPolicy; gpuNodes: readonly GpuNodeFacts[]; validation: PolicyValidation; rendered: Rendered | undefined } | undefined;
  /** Nodes with a pull-failure or fallback annotation, and precompiled driver pods failing to pull (see fallbackQuiet). */
  private readonly fallbackMarked = new Set<string>();
  private readonly failingPulls = new Set<string>();
  /** Nodes per pool label (see poolAssigned). */
  private readonly poolCounts = new Map<string, number>();
  /** Nodes whose node object or gpuop pods changed since the upgrade executor last took them (see takeChangedNodes). */
  private changedNodes = new Set<string>();
  /** The views of the nodes gpuop serves, and the labels due on them (see refreshViews). */
  private readonly views = new Map<string, NodeView>();
  private readonly labelsDue = new Map<string, Record<string, string | null>>();
  /** Nodes changed since refreshViews last ran; every node on the first. */
  private staleViews = new Set<string>();
  private everyView = true;
  /** See split: some node's facts changed since the last split. */
  private factsChanged = true;
  private lastSplit: { gpuNodes: GpuNodeFacts[]; problems: GpuNodeProblem[] } | undefined;

  constructor(opts: { gpuNodeOptions: GpuNodeOptions; allowedRepositories?: RepositoryAllowList | undefined }) {
    this.gpuNodeOptions = opts.gpuNodeOptions;
    this.allowedRepositories = opts.allowedRepositories;
  }

  driverPodChanged(type: ChangeType, pod: Pod, old?: Pod): void {
    this.driverPods.update(type, pod, old);
    this.podMoved(pod, old);
    const key = pod.metadata.uid ?? `${pod.metadata.namespace}/${pod.metadata.name}`;
    if (type !== "deleted" && failingToPull(pod)) this.failingPulls.add(key);
    else this.failingPulls.delete(key);
  }

  operandPodChanged(type: ChangeType, pod: Pod, old?: Pod): void {
    this.operandPods.update(type, pod, old);
    this.podMoved(pod, old);
  }

  /**
   * The nodes whose node object or driver or operand pods changed since the last call: the
   * upgrade executor looks at those only (UpgradeInputs.changed). Taken once per executor pass;
   * a pass that does not reach the executor leaves them for the next.
   */
  takeChangedNodes(): ReadonlySet<string> {
    const names = this.changedNodes;
    this.changedNodes = new Set();
    return names;
  }

  private podMoved(pod: Pod, old?: Pod): void {
    if (pod.spec?.nodeName !== undefined) this.changedNodes.add(pod.spec.nodeName);
    if (old?.spec?.nodeName !== undefined) this.changedNodes.add(old.spec.nodeName);
  }

  nodeChanged(type: ChangeType, node: Node, old?: Node): void {
    const name = node.metadata.name ?? "";
    this.changedNodes.add(name);
    this.staleViews.add(name);
    // Nodes per pool label, for prune: kept as nodes change rather than counted on every pass.
    // The informer tells a deletion with the object as it was last, and no old one.
    const was = (type === "deleted" ? node : old)?.metadata.labels?.[POOL_NODE_LABEL];
    const is = type === "deleted" ? undefined : node.metadata.labels?.[POOL_NODE_LABEL];
    if (was !== is) {
      if (was !== undefined) this.poolCounts.set(was, (this.poolCounts.get(was) ?? 1) - 1);
      if (is !== undefined) this.poolCounts.set(is, (this.poolCounts.get(is) ?? 0) + 1);
      if (was !== undefined && this.poolCounts.get(was)! <= 0) this.poolCounts.delete(was);
    }
    const annotations = node.metadata.annotations ?? {};
    if (type !== "deleted" && (annotations[PULL_FAILED_ANNOTATION] !== undefined || annotations[FALLBACK_REASON_ANNOTATION] !== undefined)) this.fallbackMarked.add(name);
    else this.fallbackMarked.delete(name);
    if (type === "deleted") this.classifiedByName.delete(name);
  }

  /** Some node's pool label names this pool (a DaemonSet is not pruned while one does). */
  poolAssigned(pool: string): boolean {
    return (this.poolCounts.get(pool) ?? 0) > 0;
  }

  /**
   * Brings the views of the nodes gpuop serves up to date: those of the nodes that changed since
   * the last call, every node's on the first. `served` gives a node as the cache has it now, if
   * gpuop serves it; `all`, every such node. A pass then reads the labels due and the fleet's facts
   * without looking at every node: at thousands of nodes, most passes follow a few pods.
   */
  refreshViews(served: (name: string) => Node | undefined, all: () => readonly Node[]): void {
    let names: Iterable<string> = this.staleViews;
    if (this.everyView) {
      this.everyView = false;
      names = new Set([...all().map((n) => n.metadata.name ?? ""), ...this.views.keys(), ...this.staleViews]);
    }
    this.staleViews = new Set();
    for (const name of names) {
      const node = served(name);
      const before = this.views.get(name);
      const view = node && this.nodeView(node);
      if (view) this.views.set(name, view);
      else this.views.delete(name);
      if (view && Object.keys(view.labels).length > 0) this.labelsDue.set(name, view.labels);
      else this.labelsDue.delete(name);
      // The facts as the same object while they do not change (nodeView): a new one, or none, is a change of the fleet's.
      if (before?.classified !== view?.classified) this.factsChanged = true;
    }
  }

  /** The GPU labels gpuop still has to set, by node (as of refreshViews). */
  get labelsToSet(): ReadonlyMap<string, Record<string, string | null>> {
    return this.labelsDue;
  }

  /**
   * GPU nodes gpuop can serve and those with a problem, each sorted by name (as classifyNodes gives
   * them), as of refreshViews. The same arrays while every node's facts are the same objects: most
   * passes follow pods and upgrade steps, and sorting every node on each was linear work for no change.
   */
  split(): { gpuNodes: GpuNodeFacts[]; problems: GpuNodeProblem[] } {
    if (this.lastSplit && !this.factsChanged) return this.lastSplit;
    const classified: GpuNodeClassification[] = [];
    for (const v of this.views.values()) if (v.classified) classified.push(v.classified);
    const result = splitClassifications(classified);
    Object.freeze(result.gpuNodes);
    Object.freeze(result.problems);
    this.lastSplit = result;
    this.factsChanged = false;
    return result;
  }

  /** No node is marked by the fallback and no precompiled driver pod fails to pull (FallbackInput.quiet). */
  get fallbackQuiet(): boolean {
    return this.fallbackMarked.size === 0 && this.failingPulls.size === 0;
  }

  private nodeView(node: Node): NodeView {
    let view = this.nodeViews.get(node);
    if (!view) {
      const name = node.metadata.name ?? "";
      let classified = isGpuNode(node, this.gpuNodeOptions) ? classifyGpuNode(node, this.gpuNodeOptions) : undefined;
      // Most changes to a node (its upgrade step, a gate) leave its facts as they were: the same
      // object then, so a pass sees by identity that the fleet's facts did not change (fleetChecks).
      const before = this.classifiedByName.get(name);
      if (classified && before && sameFlat(before, classified)) classified = before;
      if (classified) this.classifiedByName.set(name, classified);
      else this.classifiedByName.delete(name);
      view = { labels: desiredNodeLabels(node, this.gpuNodeOptions), ...(classified ? { classified } : {}) };
      this.nodeViews.set(node, view);
    }
    return view;
  }

  /**
   * Validation and rendering of the active policy for the GPU nodes' facts: worked out again only
   * when the policy or some node's facts changed. Most passes follow pods and upgrade steps, which
   * change neither; validating and rendering (grouping every node into its pool, twice) on each
   * was a fifth of a pass. A policy with errors is not rendered. Frozen, as they are shared.
   */
  fleetChecks(policy: NormalizedClusterPolicy, gpuNodes: readonly GpuNodeFacts[], render: () => Rendered): { validation: PolicyValidation; rendered: Rendered | undefined } {
    const kept = this.fleet;
    if (kept && kept.policy === policy && (kept.gpuNodes === gpuNodes || (kept.gpuNodes.length === gpuNodes.length && kept.gpuNodes.every((n, i) => n === gpuNodes[i])))) return kept;
    const validation = deepFreeze(validatePolicy(policy, gpuNodes, this.allowedRepositories ? { allowedRepositories: this.allowedRepositories } : {}));
    const rendered = validation.errors.length === 0 ? deepFreeze(render()) : undefined;
    this.fleet = { policy, gpuNodes: Object.isFrozen(gpuNodes) ? gpuNodes : [...gpuNodes], validation, rendered };
    return this.fleet;
  }
}

/**
 * What a pass counts over the GPU nodes, once per array: the array stays the same object while no
 * node's facts change (DriverMemory.split), so most passes count nothing again.
 */
export interface FleetCounts {
  deployable: number;
  notReady: number;
  total: number;
  archOf: ReadonlyMap<string, string>;
}
const FLEET_COUNTS = new WeakMap<readonly GpuNodeFacts[], FleetCounts>();
export function fleetCounts(gpuNodes: readonly GpuNodeFacts[]): FleetCounts {
  let c = FLEET_COUNTS.get(gpuNodes);
  if (!c) {
    c = { deployable: gpuNodes.filter((n) => n.deployable).length, notReady: gpuNodes.filter((n) => !n.ready).length, total: gpuNodes.length, archOf: new Map(gpuNodes.map((n) => [n.name, n.arch])) };
    FLEET_COUNTS.set(gpuNodes, c);
  }
  return c;
}

/** Nodes per driver mode, once per array of plans (the fallback's quiet path keeps one per rendering). */
const DRIVER_MODES = new WeakMap<readonly { mode: string }[], { labels: { mode: string }; value: number }[]>();
export function driverModeSeries(plans: readonly { mode: string }[]) {
  let series = DRIVER_MODES.get(plans);
  if (!series) {
    series = ["precompiled", "fallback", "none"].map((mode) => ({ labels: { mode }, value: plans.filter((p) => p.mode === mode).length }));
    DRIVER_MODES.set(plans, series);
  }
  return series;
}

const GATE_LABELS = new Set(OPERANDS.map(gateLabel));

/**
 * A label change the driver controller acts on. The operand controller opens a node's gates one
 * by one as its operands come up, a few patches per node in every rollout; a pass reads them only
 * to close them in the steps that stop the operands (OPERANDS_STOP_STATES), so elsewhere a change
 * of gates alone is no reason for a pass (the next pass reads the node as it is then).
 */
export function labelsMatter(node: Node, old: Node): boolean {
  const now = node.metadata.labels ?? {};
  const before = old.metadata.labels ?? {};
  if (sameStringMap(now, before)) return false;
  if (OPERANDS_STOP_STATES.has(now[UPGRADE_STATE_LABEL] ?? "")) return true;
  for (const key of new Set([...Object.keys(now), ...Object.keys(before)])) if (now[key] !== before[key] && !GATE_LABELS.has(key)) return true;
  return false;
}

/** A precompiled driver pod whose driver container waits on an image it cannot pull (the fallback's concern). */
const failingToPull = (pod: Pod) => pod.metadata.labels?.[PRECOMPILED_LABEL] === "true" && pullFailure(pod, DRIVER_CONTAINER, 0, 0) !== undefined;

/** Two objects of primitives (GPU node facts) hold the same values. */
function sameFlat(a: object, b: object): boolean {
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const keys = Object.keys(x);
  return keys.length === Object.keys(y).length && keys.every((k) => x[k] === y[k]);
}

/**
 * A desired DaemonSet found applied, and what of the live one showed it. The live object changes
 * with every status update (a pod Ready): comparing the whole spec on each pass was 3% of a
 * 3,000-node switch. Its spec is the same while its uid and generation are; its labels and
 * owners can change without a new generation, so they are compared too.
 */
export class AppliedDaemonSet {
  private readonly desired: DriverDaemonSet;
  private readonly uid: string | undefined;
  private readonly generation: number | undefined;
  private readonly labels: Readonly<Record<string, string>> | undefined;
  private readonly owners: string;

  constructor(desired: DriverDaemonSet, live: DaemonSet) {
    this.desired = desired;
    this.uid = live.metadata.uid;
    this.generation = live.metadata.generation;
    this.labels = live.metadata.labels;
    this.owners = JSON.stringify(live.metadata.ownerReferences ?? []);
  }

  matches(desired: DriverDaemonSet, live: DaemonSet): boolean {
    return desired === this.desired && live.metadata.uid === this.uid && live.metadata.generation === this.generation && sameStringMap(live.metadata.labels, this.labels) && JSON.stringify(live.metadata.ownerReferences ?? []) === this.owners;
  }
}
