/**
 * Driver upgrades with NVIDIA's per-node state machine. Everything that takes
 * a working driver away from a node (an in-place upgrade of its pool's
 * DaemonSet, or a move to another pool) walks the same steps: cordon, wait
 * for jobs, evict GPU pods, optionally drain, restart the driver, validate,
 * uncordon. The state lives in a node label, so a restarted operator resumes
 * where the last one stopped. This module is pure: the controller observes,
 * calls planUpgrades, and carries out the actions.
 */
import { createHash } from "node:crypto";
import { canonicalJson } from "./diff.ts";
import type { DriverUpgradePolicySpec } from "./policy.ts";
import { resolveMaxUnavailable } from "./rollout.ts";

export const UPGRADE_STATE_LABEL = "nvidia.com/gpu-driver-upgrade-state";
export const UPGRADE_SKIP_LABEL = "nvidia.com/gpu-driver-upgrade.skip";
/** Set when the upgrade cordoned the node, so only those nodes are uncordoned after it. */
export const CORDONED_BY_UPGRADE_ANNOTATION = "gpuop.nvidia.com/upgrade-cordoned";
/** When the node entered its current upgrade state (RFC 3339), for the step timeouts. */
export const STATE_SINCE_ANNOTATION = "gpuop.nvidia.com/upgrade-state-since";
/** Why the node's upgrade failed, kept for the policy's status until the node leaves upgrade-failed. */
export const FAILED_REASON_ANNOTATION = "gpuop.nvidia.com/upgrade-failed-reason";
/** Hash of a driver pod template, without what does not change the bits a node runs. */
export const TEMPLATE_HASH_ANNOTATION = "gpuop.nvidia.com/driver-template-hash";

export const UPGRADE_STATES = [
  "upgrade-required",
  "cordon-required",
  "wait-for-jobs-required",
  "pod-deletion-required",
  "drain-required",
  "pod-restart-required",
  "validation-required",
  "uncordon-required",
  "upgrade-done",
  "upgrade-failed",
] as const;
export type UpgradeState = (typeof UPGRADE_STATES)[number];

/**
 * The state in which a node runs no driver pod: every driver DaemonSet's pods require the state
 * label not to have this value (render.ts), so the DaemonSet controller removes the old pod and
 * creates no new one until the planner, having seen the node without any driver pod, moves on.
 */
export const DRIVER_RESTART_STATE = "pod-restart-required" satisfies UpgradeState;

/** States in which a node is being worked on: it counts against maxParallelUpgrades and maxUnavailable. */
export const IN_PROGRESS_STATES: ReadonlySet<string> = new Set([
  "cordon-required",
  "wait-for-jobs-required",
  "pod-deletion-required",
  "drain-required",
  "pod-restart-required",
  "validation-required",
  "uncordon-required",
]);

/**
 * Steps whose end only a watch reports: the old driver pod gone and the operand pods gone
 * (pod-restart-required), the new driver pod and the validator Ready (validation-required). The
 * other steps wait on what nothing watches (workload pods, evictions) and are looked at again on
 * a timer.
 */
export const WATCHED_STATES: ReadonlySet<string> = new Set(["pod-restart-required", "validation-required"]);

/**
 * When to look at the nodes in upgrade steps again without an event: `pollMs` while any is in a
 * step that waits on something no watch reports; otherwise when the first watched step times
 * out (validationTimeoutSeconds after it began), so a pass does not run every few seconds for
 * minutes while the last nodes wait for their pods (each pass has its cost, once linear in the
 * nodes; timer-driven passes made an upgrade's CPU grow faster than the cluster). Undefined
 * when no node is in a step.
 */
export function recheckAfterMs(steps: readonly { state: string; stateSince?: number }[], validationTimeoutSeconds: number, now: number, pollMs: number): number | undefined {
  let at: number | undefined;
  for (const { state, stateSince } of steps) {
    if (!IN_PROGRESS_STATES.has(state)) continue;
    if (!WATCHED_STATES.has(state) || stateSince === undefined) return pollMs;
    const due = stateSince + validationTimeoutSeconds * 1000 - now;
    at = Math.min(at ?? Infinity, due);
  }
  return at === undefined ? undefined : Math.max(pollMs, Math.ceil(at) + 1000);
}

/**
 * Driver upgrade steps after which the driver is taken away: the operands stop here, before it
 * goes, as NVIDIA's driver manager evicts them before it unloads the driver. The step that enters
 * one closes the node's operand gates in its own patch (closeGates), and the restart waits for
 * their pods to be gone (docs/adr/0006).
 */
export const OPERANDS_STOP_STATES: ReadonlySet<string> = new Set(["pod-deletion-required", "drain-required", "pod-restart-required"]);

/**
 * Whether a node's step needs the pods running on it (listed on demand, once per node per pass):
 * waiting for jobs (only with a selector), and the two eviction steps. The operator's own operand
 * pods (the validator that validation waits for, those the restart waits to be gone) come from
 * the operator's cache instead (UpgradeNode.operandPods).
 */
export function needsPods(n: Pick<UpgradeNode, "state" | "skip">, s: UpgradeSettings): boolean {
  if (n.skip) return false;
  if (n.state === "wait-for-jobs-required") return s.waitForCompletion.podSelector !== undefined;
  return n.state === "pod-deletion-required" || n.state === "drain-required";
}

/**
 * The pods an eviction step acts on: GPU pods (pod deletion) or the drain's, never finished,
 * driver or DaemonSet pods. Empty when the step has nothing to evict or wait for.
 */
export function podsToEvict(state: string | undefined, pods: readonly NodePod[], s: UpgradeSettings): NodePod[] {
  if (state === "pod-deletion-required") return pods.filter((p) => p.usesGpu && !p.finished && !p.driver && !p.daemonSet);
  if (state === "drain-required") {
    const match = s.drain.podSelector === undefined ? () => true : parseSelector(s.drain.podSelector);
    return pods.filter((p) => !p.finished && !p.driver && !p.daemonSet && match(p.labels));
  }
  return [];
}

/**
 * Whether a node in an eviction step must list its pods again this pass, given `clearSince`: the
 * stateSince of the step in which a list (made after the cordon was seen) found nothing to evict
 * or wait for. That list stays good while the node's operand pods are still going and the step
 * is within its timeout: no step can act on the list then (the restart waits for the operands,
 * and only after the timeout goes on without them), and the restart is planned from a fresh list
 * only. A GPU pod bound to the cordoned node meanwhile is found by that fresh list. So a node
 * whose operands take a few passes to stop is listed about once, not once per pass.
 */
export function podsNeededAgain(n: UpgradeNode, s: UpgradeSettings, now: number, clearSince: number | undefined): boolean {
  if (!needsPods(n, s)) return false;
  if (n.state !== "pod-deletion-required" && n.state !== "drain-required") return true;
  // With drain on, pod deletion goes on to the drain, which evicts more than GPU pods: list.
  if (n.state === "pod-deletion-required" && s.drain.enable) return true;
  if (clearSince === undefined || n.stateSince === undefined || clearSince !== n.stateSince) return true;
  const operandsLeft = (n.operandPods ?? []).some((p) => p.operand !== undefined && !p.finished);
  const timeout = n.state === "drain-required" ? s.drain.timeoutSeconds : s.podDeletion.timeoutSeconds;
  const withinTimeout = timeout === 0 || (now - n.stateSince) / 1000 <= timeout;
  return !(operandsLeft && withinTimeout);
}

/** How long a new driver pod may take to become Ready before the node is marked failed. */
export const VALIDATION_TIMEOUT_SECONDS = 600;

export interface EvictionSettings {
  force: boolean;
  timeoutSeconds: number;
  deleteEmptyDir: boolean;
}

export interface UpgradeSettings {
  autoUpgrade: boolean;
  /** 0: no limit. */
  maxParallelUpgrades: number;
  /** Resolved to a node count. */
  maxUnavailable: number;
  waitForCompletion: { podSelector?: string; timeoutSeconds: number };
  podDeletion: EvictionSettings;
  drain: EvictionSettings & { enable: boolean; podSelector?: string };
  validationTimeoutSeconds: number;
}

/** The policy's upgradePolicy with NVIDIA's defaults, maxUnavailable resolved against `nodes` GPU nodes. */
export function upgradeSettings(p: DriverUpgradePolicySpec | undefined, nodes: number): UpgradeSettings {
  const u = p ?? {};
  const selector = (s: string | undefined) => (s && s.trim() !== "" ? { podSelector: s.trim() } : {});
  return {
    autoUpgrade: u.autoUpgrade ?? true,
    maxParallelUpgrades: Math.max(0, Math.floor(u.maxParallelUpgrades ?? 1)),
    maxUnavailable: resolveMaxUnavailable(u.maxUnavailable, Math.max(nodes, 1)),
    waitForCompletion: { ...selector(u.waitForCompletion?.podSelector), timeoutSeconds: u.waitForCompletion?.timeoutSeconds ?? 0 },
    podDeletion: { force: u.podDeletion?.force ?? false, timeoutSeconds: u.podDeletion?.timeoutSeconds ?? 300, deleteEmptyDir: u.podDeletion?.deleteEmptyDir ?? false },
    drain: {
      enable: u.drain?.enable ?? false,
      force: u.drain?.force ?? false,
      ...selector(u.drain?.podSelector),
      timeoutSeconds: u.drain?.timeoutSeconds ?? 300,
      deleteEmptyDir: u.drain?.deleteEmptyDir ?? false,
    },
    validationTimeoutSeconds: VALIDATION_TIMEOUT_SECONDS,
  };
}

/** A pod running on a node in one of the eviction steps. */
export interface NodePod {
  namespace: string;
  name: string;
  labels: Readonly<Record<string, string>>;
  /** Requests or limits an `nvidia.com/*` resource. */
  usesGpu: boolean;
  /** Owned by a DaemonSet: eviction would only bring it back; left alone, as kubectl drain does. */
  daemonSet: boolean;
  /** Owned by a controller that recreates it elsewhere. */
  controlled: boolean;
  emptyDir: boolean;
  /** Succeeded or Failed. */
  finished: boolean;
  terminating: boolean;
  /** A driver pod (gpuop's own), never evicted by these steps. */
  driver: boolean;
  /** One of gpuop's operand pods (toolkit, device plugin, ...): its `app` label. */
  operand?: string;
  ready?: boolean;
}

/** NVIDIA's upgrade validates a node by its operator-validator pod being Ready (WithValidationEnabled). */
export const VALIDATOR_APP = "nvidia-operator-validator";

/** The driver pod on a node, from the pool its label names. */
export interface DriverPodView {
  namespace: string;
  name: string;
  ready: boolean;
  /** Runs what its DaemonSet's template wants now (see driverPodCurrent). */
  current: boolean;
  terminating: boolean;
}

export interface UpgradeNode {
  name: string;
  /** The upgrade-state label's value, if any. */
  state?: string;
  skip: boolean;
  unschedulable: boolean;
  cordonedByUpgrade: boolean;
  /** Epoch ms the node entered its state. */
  stateSince?: number;
  /** Why it failed, as recorded when it entered upgrade-failed. */
  failedReason?: string;
  currentPool?: string;
  /** undefined: gpuop should run no driver on it. */
  desiredPool?: string;
  /** The current pool's DaemonSet exists and still selects the node (its kernel or OS did not change). */
  currentPoolLive: boolean;
  /** The driver pod of the current pool on this node. */
  driver?: DriverPodView;
  /** gpuop's driver pods on this node, of any pool, terminating ones included. */
  driverPods: number;
  /** Pods on the node; present when the state's step needs them. */
  pods?: readonly NodePod[];
  /** gpuop's operand pods on the node (toolkit, device plugin, ..., validator), from the operator's cache. */
  operandPods?: readonly NodePod[];
  /** gpuop runs the operator validator on the node: the upgrade validates the node by it. */
  validatorExpected?: boolean;
  /** Operand gate labels open on the node (`gpuop.nvidia.com/gate.<operand>=open`). */
  openGates?: readonly string[];
}

export type UpgradeAction =
  | { kind: "setState"; node: string; state: UpgradeState; reason?: string }
  /** Removes the state label: the node gets no driver from gpuop any more. */
  | { kind: "clearState"; node: string }
  | { kind: "cordon"; node: string }
  | { kind: "uncordon"; node: string }
  | { kind: "movePool"; node: string; pool: string | null }
  /** `why`: the step evicting, for the node's Event once the eviction is accepted. */
  | { kind: "evict"; node: string; namespace: string; pod: string; why?: "GPU pods" | "drain" }
  /** Closes these operand gates, in the patch of the step that enters OPERANDS_STOP_STATES. */
  | { kind: "closeGates"; node: string; gates: string[] }
  | { kind: "event"; node: string; type: "Normal" | "Warning"; reason: string; message: string };

export interface UpgradePlan {
  actions: UpgradeAction[];
  /** Nodes that need a new driver but wait for the budget. */
  waiting: string[];
  /** Nodes running an outdated driver that autoUpgrade false (or the skip label) leaves alone. */
  outdated: string[];
  failed: { node: string; reason: string }[];
  /** Nodes per upgrade state after this plan (nodes without a state left out). */
  counts: Partial<Record<UpgradeState, number>>;
  /** Nodes without a Ready driver or in an upgrade, after this plan. */
  unavailable: number;
  /** Each planned node's upgrade state after this plan (undefined: no state label). */
  states: ReadonlyMap<string, string | undefined>;
}

/**
 * What the nodes left out of a plan take of the budget (see IncrementalUpgradePlanner): nodes
 * without a working driver or in a step, and nodes in a step.
 */
export interface UpgradeBase {
  unavailable: number;
  inProgress: number;
}

/** Why a node must change driver: a pool move, a replacement in place, or not at all. */
export type UpgradeNeed = "move" | "replace" | "none";

export function upgradeNeed(n: UpgradeNode): UpgradeNeed {
  if (n.desiredPool === undefined) return "none";
  if (n.currentPool !== n.desiredPool) return "move";
  if (n.driver && !n.driver.current) return "replace";
  return "none";
}

/** The node counts against maxUnavailable: gpuop should run a driver on it, and it is in a step or has no working driver. */
export const unavailableNow = (n: UpgradeNode) => n.desiredPool !== undefined && (IN_PROGRESS_STATES.has(n.state ?? "") || !hasWorkingDriver(n));
/** The node counts against maxParallelUpgrades. */
export const inProgressNow = (n: UpgradeNode) => IN_PROGRESS_STATES.has(n.state ?? "");

/** The node has a driver worth protecting: a Ready pod of a pool that still selects it. */
export const hasWorkingDriver = (n: UpgradeNode) => n.currentPool !== undefined && n.currentPoolLive && n.driver?.ready === true && !n.driver.terminating;

/** The node's operator validator is Ready again (when gpuop runs one there): NVIDIA's validation step. */
const validated = (n: UpgradeNode) => !n.validatorExpected || (n.operandPods ?? []).some((p) => p.operand === VALIDATOR_APP && p.ready === true && !p.terminating);

const driverDone = (n: UpgradeNode) => n.desiredPool !== undefined && n.currentPool === n.desiredPool && n.driver?.ready === true && n.driver.current && !n.driver.terminating;

/**
 * What one step decided for a node: its work is done, or it has none (`next`, with what to
 * say about it in the node's Event), it is not done yet (`wait`; evictions may have been
 * issued), or it cannot be done (`fail`). A step's "done" condition is all it decides; the
 * walk below chains the steps. `news`: something a user acts on happened (the Event's reason),
 * so the pass records an Event even if it neither starts nor ends the upgrade.
 */
type StepOutcome = { next: UpgradeState; note?: string; warning?: boolean; news?: string } | { wait: true } | { fail: string };
const WAIT: StepOutcome = { wait: true };

/**
 * Plans every node's upgrade. Within one pass a node goes through every step whose work is
 * already done or needs nothing, and only the state where it stops is written, in one node
 * patch with what the steps changed (cordon, pool label, uncordon, the operand gates closed).
 * Events say what a user acts on, not every step: the upgrade starting (with the operands
 * stopping), a warning or a failure, the driver changing again, the upgrade done (evictions
 * get theirs from the executor, once accepted). A node never goes past pod-restart-required in the pass that
 * enters it: the old driver pod must be seen gone first. Pods listed before a cordon this
 * pass writes are not used (a pod may have been scheduled since): the eviction steps wait
 * for the next pass's list. New upgrades start, in name order, while both
 * maxParallelUpgrades and maxUnavailable allow; nodes without a working driver move pools
 * at once.
 */
export function planUpgrades(nodes: readonly UpgradeNode[], s: UpgradeSettings, now: number, base: UpgradeBase = { unavailable: 0, inProgress: 0 }): UpgradePlan {
  const actions: UpgradeAction[] = [];
  const waiting: string[] = [];
  const outdated: string[] = [];
  const failed: { node: string; reason: string }[] = [];
  const finalState = new Map<string, string | undefined>();
  // The caches list nodes in name order (the API server's), so the sort is mostly a check.
  const inOrder = nodes.every((n, i) => i === 0 || nodes[i - 1]!.name < n.name);
  const sorted = inOrder ? nodes : [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  let unavailable = base.unavailable + sorted.filter(unavailableNow).length;
  let inProgress = base.inProgress + sorted.filter(inProgressNow).length;

  const elapsed = (n: UpgradeNode) => (n.stateSince === undefined ? 0 : (now - n.stateSince) / 1000);
  const candidates: UpgradeNode[] = [];

  for (const n of sorted) {
    finalState.set(n.name, n.state);
    const need = upgradeNeed(n);
    const state = n.state ?? "";
    // A skipped node in the restart step has no driver at all: it finishes the step rather than stay without one.
    if (n.skip && n.state !== DRIVER_RESTART_STATE) {
      if (need !== "none") outdated.push(n.name);
      continue;
    }
    // Leaving gpuop (driver disabled, node excluded): nothing to protect it for; an upgrade under way ends.
    if (n.desiredPool === undefined) {
      if (n.currentPool !== undefined) actions.push({ kind: "movePool", node: n.name, pool: null });
      if (n.cordonedByUpgrade) actions.push({ kind: "uncordon", node: n.name });
      if (n.state !== undefined) {
        actions.push({ kind: "clearState", node: n.name });
        finalState.set(n.name, undefined);
      }
      continue;
    }
    if (!IN_PROGRESS_STATES.has(state)) {
      // A node with no working driver has nothing to lose: it moves at once.
      if (need === "move" && !hasWorkingDriver(n)) {
        actions.push({ kind: "movePool", node: n.name, pool: n.desiredPool });
        continue;
      }
      if (state === "upgrade-failed") {
        // Repaired by hand (or the policy rolled back): finish like a successful upgrade.
        if (driverDone(n)) walk(n, "uncordon-required", ["the driver is Ready again; leaving upgrade-failed"]);
        else failed.push({ node: n.name, reason: n.failedReason ?? "see the node's Events" });
        continue;
      }
      if (need === "replace" && !s.autoUpgrade) {
        outdated.push(n.name);
        continue;
      }
      if (need === "none") {
        if (state !== "upgrade-done" && driverDone(n)) {
          actions.push({ kind: "setState", node: n.name, state: "upgrade-done" });
          finalState.set(n.name, "upgrade-done");
        }
        continue;
      }
      candidates.push(n);
      continue;
    }
    walk(n, state);
  }

  // Start new upgrades within both limits. A node without a Ready driver is already counted as unavailable.
  for (const n of candidates) {
    const parallelOk = s.maxParallelUpgrades === 0 || inProgress < s.maxParallelUpgrades;
    const costs = hasWorkingDriver(n) ? 1 : 0;
    const why = upgradeNeed(n) === "move" ? `driver moves to pool ${n.desiredPool}` : "driver pod is outdated";
    if (!parallelOk || unavailable + costs > s.maxUnavailable) {
      waiting.push(n.name);
      // The label says the node waits for a new driver (kubectl, `gpuop status`); a node that
      // starts at once never carries it. No Event: the one that starts the node says why.
      if (n.state !== "upgrade-required") actions.push({ kind: "setState", node: n.name, state: "upgrade-required" });
      finalState.set(n.name, "upgrade-required");
      continue;
    }
    inProgress++;
    unavailable += costs;
    walk(n, "cordon-required", [why, "upgrade started"], true);
  }

  const counts: Partial<Record<UpgradeState, number>> = {};
  for (const st of finalState.values()) if (st && (UPGRADE_STATES as readonly string[]).includes(st)) counts[st as UpgradeState] = (counts[st as UpgradeState] ?? 0) + 1;
  return { actions, waiting, outdated, failed, counts, unavailable, states: finalState };

  /**
   * Takes `n` from `from` through each step that is done, on a copy that records what the
   * steps change; writes the state where it stops (if not the one observed) and one Event.
   */
  function walk(n: UpgradeNode, from: string, notes: string[] = [], started = false): void {
    const v: UpgradeNode = { ...n, state: from, ...(from !== n.state ? { stateSince: now } : {}) };
    let warning = false;
    // What a user acts on besides a start, a warning or the end (which always get an Event).
    let news: string | undefined;
    for (let i = 0; i < UPGRADE_STATES.length; i++) {
      const o = step(v);
      if ("wait" in o) break;
      if ("fail" in o) {
        actions.push({ kind: "setState", node: n.name, state: "upgrade-failed", reason: o.fail });
        finalState.set(n.name, "upgrade-failed");
        actions.push({ kind: "event", node: n.name, type: "Warning", reason: eventReason("upgrade-failed"), message: [...notes, o.fail].join("; ") });
        failed.push({ node: n.name, reason: o.fail });
        return;
      }
      if (o.note !== undefined) notes.push(o.note);
      if (o.warning) warning = true;
      if (o.news !== undefined) news = o.news;
      v.state = o.next;
      v.stateSince = now;
      // The restart gate: the next step needs the old driver pod seen gone, in a later pass.
      if (o.next === DRIVER_RESTART_STATE) break;
    }
    // The operands stop before the driver goes: their gates close in the patch of the step that
    // takes it away, so the operand controller has nothing left to write for it.
    const gates = OPERANDS_STOP_STATES.has(v.state ?? "") ? [...(n.openGates ?? [])] : [];
    if (gates.length > 0) {
      actions.push({ kind: "closeGates", node: n.name, gates });
      notes.push("NVIDIA's operands on this node stop, and come back in order (toolkit, then device plugin, GFD, DCGM exporter, validator) once the new driver is Ready");
      news ??= "OperandsStopped";
    }
    if (v.state !== n.state) {
      actions.push({ kind: "setState", node: n.name, state: v.state as UpgradeState });
      finalState.set(n.name, v.state);
    }
    // One Event for a pass a user would want to hear of; the steps in between are in the state label.
    const done = v.state === "upgrade-done";
    if (notes.length > 0 && (started || warning || done || news !== undefined)) {
      const reason = started ? "DriverUpgradeStarted" : warning || done ? eventReason(v.state as UpgradeState) : news!;
      actions.push({ kind: "event", node: n.name, type: warning ? "Warning" : "Normal", reason, message: notes.join("; ") });
    }
  }

  /** One step of `v`, from its state as the walk has it; effects go to `actions` and to `v`. */
  function step(v: UpgradeNode): StepOutcome {
    const need = upgradeNeed(v);
    switch (v.state) {
      case "cordon-required": {
        const note = v.unschedulable && !v.cordonedByUpgrade ? "node was already cordoned; it stays cordoned after the upgrade" : "node cordoned";
        if (!v.unschedulable) {
          actions.push({ kind: "cordon", node: v.name });
          v.unschedulable = true;
          v.cordonedByUpgrade = true;
          // Listed before the cordon: a pod scheduled since would be missed. The next pass lists again.
          delete v.pods;
        }
        return { next: "wait-for-jobs-required", note };
      }
      case "wait-for-jobs-required": {
        const selector = s.waitForCompletion.podSelector;
        if (selector === undefined) return { next: "pod-deletion-required" };
        if (v.pods === undefined) return WAIT;
        const match = parseSelector(selector);
        const running = v.pods.filter((p) => !p.finished && !p.driver && match(p.labels));
        if (running.length === 0) return { next: "pod-deletion-required", note: "no matching jobs running" };
        if (s.waitForCompletion.timeoutSeconds > 0 && elapsed(v) > s.waitForCompletion.timeoutSeconds) {
          return { next: "pod-deletion-required", note: `jobs still running after ${s.waitForCompletion.timeoutSeconds}s: ${podList(running)}; going on with pod deletion`, warning: true };
        }
        return WAIT;
      }
      case "pod-deletion-required": {
        if (v.pods === undefined) return WAIT;
        const pods = podsToEvict("pod-deletion-required", v.pods, s);
        return evictStep(v, pods, s.podDeletion, "GPU pods",
          () => (s.drain.enable ? { next: "drain-required", note: "no GPU pods left on the node" } : restartWhenOperandsStopped(v, need, s.podDeletion.timeoutSeconds, "no GPU pods left on the node")),
          (why) => (s.drain.enable ? { next: "drain-required", note: `${why}; draining instead`, warning: true } : { fail: why }));
      }
      case "drain-required": {
        if (v.pods === undefined) return WAIT;
        const pods = podsToEvict("drain-required", v.pods, s);
        return evictStep(v, pods, s.drain, "drain", () => restartWhenOperandsStopped(v, need, s.drain.timeoutSeconds, "node drained"), (why) => ({ fail: why }));
      }
      case "pod-restart-required":
        // The DaemonSet controller removes the driver pods here and creates none (render.ts). The
        // policy may have changed the pool again: no pod can start here, so the label follows.
        if (need === "move") movePool(v);
        if (v.driverPods > 0) {
          if (elapsed(v) > s.validationTimeoutSeconds) return { fail: `the old driver pod was still on the node after ${s.validationTimeoutSeconds}s` };
          return WAIT;
        }
        // No driver pod of any pool is left: only now may the new one be created.
        return { next: "validation-required", note: "old driver pod gone; starting the new one" };
      case "validation-required":
        if (driverDone(v) && validated(v)) return { next: "uncordon-required", note: v.validatorExpected ? "new driver and the operator validator are Ready" : "new driver is Ready" };
        // The policy changed the driver again since the restart: restart again, the same safe way.
        if (need !== "none") return { ...restart(v, need, need === "move" ? `driver moves again, to pool ${v.desiredPool}` : "driver changed again; restarting it"), news: "DriverUpgradeRestartedAgain" };
        if (elapsed(v) > s.validationTimeoutSeconds) return { fail: `the new driver pod was not Ready within ${s.validationTimeoutSeconds}s` };
        return WAIT;
      case "uncordon-required":
        if (!v.cordonedByUpgrade) return { next: "upgrade-done", note: "upgrade done; node left cordoned as it was before" };
        actions.push({ kind: "uncordon", node: v.name });
        v.unschedulable = false;
        v.cordonedByUpgrade = false;
        return { next: "upgrade-done", note: "node uncordoned; upgrade done" };
      default:
        return WAIT;
    }
  }

  /** The pool label follows the policy; the driver view was of the old pool's pod. */
  function movePool(v: UpgradeNode): void {
    actions.push({ kind: "movePool", node: v.name, pool: v.desiredPool ?? null });
    if (v.desiredPool !== undefined) v.currentPool = v.desiredPool;
    delete v.driver;
  }

  /**
   * The operands stop before the driver goes, as NVIDIA's driver manager evicts them before it
   * unloads the driver: gpuop's operand controller closes the node's gates in these steps, and the
   * restart waits until their pods are gone (after the step's timeout it goes on, with a Warning).
   */
  function restartWhenOperandsStopped(v: UpgradeNode, need: UpgradeNeed, timeoutSeconds: number, message: string): StepOutcome {
    const operands = (v.operandPods ?? []).filter((p) => p.operand !== undefined && !p.finished);
    if (operands.length === 0) return restart(v, need, message);
    if (timeoutSeconds > 0 && elapsed(v) > timeoutSeconds) {
      return { ...restart(v, need, `${message}; operand pods still on the node after ${timeoutSeconds}s: ${podList(operands)}; restarting the driver anyway`), warning: true };
    }
    return WAIT;
  }

  /** Into the restart step; a pool move goes in the same node patch, as no pod may start there. */
  function restart(v: UpgradeNode, need: UpgradeNeed, message: string): StepOutcome {
    if (need === "move") movePool(v);
    return { next: DRIVER_RESTART_STATE, note: need === "move" ? `${message}; driver moves to pool ${v.desiredPool}` : message };
  }

  function evictStep(v: UpgradeNode, pods: NodePod[], e: EvictionSettings, what: string, done: () => StepOutcome, blocked: (why: string) => StepOutcome): StepOutcome {
    if (pods.length === 0) return done();
    const unmanaged = e.force ? [] : pods.filter((p) => !p.controlled);
    const emptyDir = e.deleteEmptyDir ? [] : pods.filter((p) => p.emptyDir);
    if (unmanaged.length > 0) return blocked(`${what}: pods no controller owns (set force to delete them): ${podList(unmanaged)}`);
    if (emptyDir.length > 0) return blocked(`${what}: pods with emptyDir volumes (set deleteEmptyDir to delete them): ${podList(emptyDir)}`);
    if (e.timeoutSeconds > 0 && elapsed(v) > e.timeoutSeconds) {
      return blocked(`${what}: pods not evicted within ${e.timeoutSeconds}s (a PodDisruptionBudget may forbid it): ${podList(pods)}`);
    }
    for (const p of pods) if (!p.terminating) actions.push({ kind: "evict", node: v.name, namespace: p.namespace, pod: p.name, why: what === "drain" ? "drain" : "GPU pods" });
    return WAIT;
  }
}

const podList = (pods: readonly NodePod[]) => pods.map((p) => `${p.namespace}/${p.name}`).join(", ");

function eventReason(state: UpgradeState): string {
  const words: Record<UpgradeState, string> = {
    "upgrade-required": "DriverUpgradeRequired",
    "cordon-required": "DriverUpgradeStarted",
    "wait-for-jobs-required": "DriverUpgradeCordoned",
    "pod-deletion-required": "DriverUpgradeJobsDone",
    "drain-required": "DriverUpgradeDrain",
    "pod-restart-required": "DriverUpgradePodsEvicted",
    "validation-required": "DriverUpgradeRestarted",
    "uncordon-required": "DriverUpgradeValidated",
    "upgrade-done": "DriverUpgradeDone",
    "upgrade-failed": "DriverUpgradeFailed",
  };
  return words[state];
}

/**
 * A label selector in the syntax kubectl takes (`a=b,c!=d,e in (f,g),!h,i`), as a predicate.
 * Throws on syntax it does not understand, so a typo is not read as "everything".
 */
export function parseSelector(selector: string): (labels: Readonly<Record<string, string>>) => boolean {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of selector) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  const tests = parts.map((raw) => raw.trim()).filter((p) => p !== "").map((p): ((l: Readonly<Record<string, string>>) => boolean) => {
    let m: RegExpExecArray | null;
    if ((m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p))) {
      const [, key, op, list] = m as unknown as [string, string, string, string];
      const values = new Set(list.split(",").map((v) => v.trim()));
      return op === "in" ? (l) => l[key] !== undefined && values.has(l[key]) : (l) => l[key] === undefined || !values.has(l[key]);
    }
    if ((m = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(p))) {
      const [, key, op, value] = m as unknown as [string, string, string, string];
      return op === "!=" ? (l) => l[key] !== value : (l) => l[key] === value;
    }
    if ((m = /^!\s*([\w./-]+)$/.exec(p))) {
      const key = m[1]!;
      return (l) => l[key] === undefined;
    }
    if (/^[\w./-]+$/.test(p)) return (l) => l[p] !== undefined;
    throw new Error(`cannot parse label selector ${JSON.stringify(selector)} at ${JSON.stringify(p)}`);
  });
  return (labels) => tests.every((t) => t(labels));
}

/** The image reference without its `@sha256:…` part. */
export const withoutDigest = (image: string) => image.replace(/@sha256:[0-9a-f]{64}$/, "");
/** The `sha256:…` digest of an image reference or a container status imageID, if it has one. */
export function digestOf(ref: string | undefined): string | undefined {
  return ref ? /@(sha256:[0-9a-f]{64})$/.exec(ref)?.[1] ?? (/^(?:[a-z-]+:\/\/)?(sha256:[0-9a-f]{64})$/.exec(ref)?.[1]) : undefined;
}

interface PodSpecLike {
  containers?: readonly { image?: string }[];
  initContainers?: readonly { image?: string }[];
  nodeSelector?: unknown;
  affinity?: unknown;
  [k: string]: unknown;
}

/**
 * Hash of a driver pod template minus what does not change what runs on a node: image
 * digests (a tag pinned to the digest it already runs) and node selection (a pool
 * gaining a node). The image's bits are compared separately (driverPodCurrent).
 */
export function driverTemplateHash(template: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: PodSpecLike }): string {
  const spec = structuredClone(template.spec ?? {}) as PodSpecLike;
  delete spec.nodeSelector;
  delete spec.affinity;
  for (const list of [spec.containers, spec.initContainers]) for (const c of list ?? []) if (c.image) (c as { image: string }).image = withoutDigest(c.image);
  const { [TEMPLATE_HASH_ANNOTATION]: _h, ...annotations } = template.metadata?.annotations ?? {};
  return createHash("sha256").update(canonicalJson({ labels: template.metadata?.labels ?? {}, annotations, spec })).digest("hex").slice(0, 16);
}

/**
 * Whether a driver pod runs what its DaemonSet wants now. The template hash decides
 * everything but the image's bits (a pod from before the hash existed: the
 * pod-template-generation label against the DaemonSet's generation); the bits are the
 * same when the wanted digest equals the digest the pod runs (its imageID, or the
 * digest in its image) or, with no digest wanted, when the tags are equal.
 */
export function driverPodCurrent(
  pod: { labels?: Record<string, string>; annotations?: Record<string, string>; image?: string; imageID?: string },
  ds: { generation?: number; templateHash?: string; image?: string },
): boolean {
  const podHash = pod.annotations?.[TEMPLATE_HASH_ANNOTATION];
  if (podHash !== undefined && ds.templateHash !== undefined) {
    if (podHash !== ds.templateHash) return false;
  } else if (ds.generation !== undefined && pod.labels?.["pod-template-generation"] !== String(ds.generation)) {
    return false;
  }
  const wanted = ds.image;
  if (!wanted || !pod.image || wanted === pod.image) return true;
  const wantedDigest = digestOf(wanted);
  if (wantedDigest === undefined) return withoutDigest(pod.image) === wanted;
  if (withoutDigest(pod.image) !== withoutDigest(wanted)) return false;
  const running = digestOf(pod.imageID) ?? digestOf(pod.image);
  return running === wantedDigest;
}
