/**
 * The upgrade plan of a whole fleet, worked out over only the nodes it can change. planUpgrades
 * looks at every node; run on every pass of a rollout, that made a pass's cost grow with the
 * cluster and the passes with the rollout's length. A node's part of the plan depends on its own
 * view, the settings, the clock (step timeouts) and the budget the other nodes leave. So a pass
 * plans only: the nodes whose view changed (a new object: the executor keeps views while nothing
 * they are made of changes), the nodes in a step that waits on no watch or whose timeout is due,
 * and the waiting nodes that the budget could start now. Every other node's outcome stands as
 * last planned, and the budget's counts and the status's lists are kept as outcomes change.
 *
 * The result equals planUpgrades over every node (a property test checks it pass after pass),
 * with one difference on purpose: a node whose planned step the cache does not show yet counts
 * against the budget as in that step, so a pass in between never starts more nodes than the
 * budget allows (planUpgrades, seeing the node as before, would plan the same node again).
 */
import { canonicalJson } from "./diff.ts";
import { hasWorkingDriver, inProgressNow, IN_PROGRESS_STATES, planUpgrades, unavailableNow, WATCHED_STATES, type UpgradeBase, type UpgradeNode, type UpgradePlan, type UpgradeSettings, type UpgradeState } from "./upgrade.ts";

/** One node's part of the last plan that looked at it. */
interface Outcome {
  /** The view it was planned from. */
  view: UpgradeNode;
  /** Its upgrade state after that plan. */
  state: string | undefined;
  /** It waits for the budget; `cost`: what starting it takes of maxUnavailable. */
  waiting: boolean;
  cost: 0 | 1;
  outdated: boolean;
  failed: string | undefined;
  /** Counts against maxUnavailable / maxParallelUpgrades: by its view, or by the step just planned for it. */
  unavailable: boolean;
  inProgress: boolean;
  /** The last plan() call that was given the node (see plan). */
  seen: number;
}

export class IncrementalUpgradePlanner {
  private readonly outcomes = new Map<string, Outcome>();
  private settingsKey: string | undefined;
  /** Marks the nodes plan() was given, to find those gone. */
  private seenMark = 0;
  private unavailable = 0;
  private inProgress = 0;
  private readonly counts = new Map<string, number>();
  /** Waiting nodes by name; those whose start costs nothing of maxUnavailable apart. */
  private readonly waiting = new SortedNames();
  private readonly freeWaiting = new Set<string>();
  private readonly outdated = new SortedNames();
  private readonly failed = new SortedNames();
  /** Nodes in a step (by view or outcome): looked at for polls and timeouts. */
  private readonly busy = new Set<string>();
  /** Nodes to plan again whatever their view (their writes failed or were put off). */
  private readonly again = new Set<string>();

  /** How many nodes the last pass planned (the property test checks it plans fewer than all; nothing decides by it). */
  lastPlanned = 0;

  /** Plans `nodes` (every node with or wanting a pool, each view a new object when it changed). */
  plan(nodes: readonly UpgradeNode[], s: UpgradeSettings, now: number): UpgradePlan {
    const mark = ++this.seenMark;
    const changed: UpgradeNode[] = [];
    let known = 0;
    for (const n of nodes) {
      const o = this.outcomes.get(n.name);
      if (o) {
        o.seen = mark;
        known++;
      }
      if (!o || o.view !== n) changed.push(n);
    }
    // Gone since the last pass: their part of the plan goes.
    const removed: string[] = [];
    if (this.outcomes.size > known) for (const [name, o] of this.outcomes) if (o.seen !== mark) removed.push(name);
    return this.planChanges(changed, removed, s, now);
  }

  /**
   * Plans from what changed since the last pass: the nodes whose view is a new object (a node
   * new to the plan included) and the nodes gone. Every other node is as last planned. The
   * executor knows which nodes its watches touched, so a pass costs the nodes that changed, not
   * the fleet. `changed` and `removed` name each node once and never the same node in both.
   */
  planChanges(changed: readonly UpgradeNode[], removed: readonly string[], s: UpgradeSettings, now: number): UpgradePlan {
    const key = canonicalJson(s);
    const everything = key !== this.settingsKey;
    this.settingsKey = key;

    for (const name of removed) this.set(name, undefined);
    const subset = new Map<string, UpgradeNode>();
    if (everything) for (const [name, o] of this.outcomes) subset.set(name, o.view);
    for (const n of changed) subset.set(n.name, n);
    for (const name of this.again) {
      const o = this.outcomes.get(name);
      if (o && !subset.has(name)) subset.set(name, o.view);
    }
    this.again.clear();
    // Steps that wait on what no watch reports are looked at every pass; watched steps when their timeout is due.
    for (const name of this.busy) {
      if (subset.has(name)) continue;
      const v = this.outcomes.get(name)!.view;
      if (!inProgressNow(v)) continue;
      if (!WATCHED_STATES.has(v.state ?? "") || (v.stateSince !== undefined && now - v.stateSince > s.validationTimeoutSeconds * 1000)) subset.set(name, v);
    }
    // Waiting nodes the budget could start: every one that costs nothing of maxUnavailable, and the
    // first of the others by name, as many as maxUnavailable leaves room for at most. A waiting node
    // after those cannot start in this plan: the ones before it either start and fill the room, or
    // are held back, and so is it.
    const outside = this.base(subset);
    const roomParallel = s.maxParallelUpgrades === 0 ? Infinity : s.maxParallelUpgrades - outside.inProgress;
    if (roomParallel > 0) {
      for (const name of this.freeWaiting) if (!subset.has(name)) subset.set(name, this.outcomes.get(name)!.view);
      let room = s.maxUnavailable - outside.unavailable;
      for (const name of this.waiting.names()) {
        if (room <= 0) break;
        if (this.freeWaiting.has(name)) continue;
        room--;
        if (!subset.has(name)) subset.set(name, this.outcomes.get(name)!.view);
      }
    }

    const planned = [...subset.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const plan = planUpgrades(planned, s, now, this.base(subset));
    this.lastPlanned = planned.length;
    const waiting = new Set(plan.waiting);
    const outdated = new Set(plan.outdated);
    const failed = new Map(plan.failed.map((f) => [f.node, f.reason]));
    for (const v of planned) {
      const state = plan.states.get(v.name);
      const stepping = IN_PROGRESS_STATES.has(state ?? "");
      this.set(v.name, {
        view: v,
        state,
        waiting: waiting.has(v.name),
        cost: hasWorkingDriver(v) ? 1 : 0,
        outdated: outdated.has(v.name),
        failed: failed.get(v.name),
        unavailable: unavailableNow(v) || (v.desiredPool !== undefined && stepping),
        inProgress: inProgressNow(v) || stepping,
        seen: this.seenMark,
      });
    }
    const counts: Partial<Record<UpgradeState, number>> = {};
    for (const [state, n] of this.counts) counts[state as UpgradeState] = n;
    return {
      actions: plan.actions,
      waiting: [...this.waiting.names()],
      outdated: [...this.outdated.names()],
      failed: [...this.failed.names()].map((node) => ({ node, reason: this.outcomes.get(node)!.failed! })),
      counts,
      unavailable: this.unavailable,
      states: plan.states,
    };
  }

  /** Plans these nodes again next pass, whatever their view: the writes of their steps failed or were put off. */
  replan(names: Iterable<string>): void {
    for (const name of names) this.again.add(name);
  }

  /** The nodes in a step (by their view or by the step last planned for them). */
  busyNames(): ReadonlySet<string> {
    return this.busy;
  }

  /** The views of the nodes in a step that this pass did not plan (their step stands). */
  *steppingViews(planned: { has(name: string): boolean }): Iterable<UpgradeNode> {
    for (const name of this.busy) if (!planned.has(name)) yield this.outcomes.get(name)!.view;
  }

  /** What the nodes outside `subset` take of the budget. */
  private base(subset: ReadonlyMap<string, unknown>): UpgradeBase {
    let unavailable = this.unavailable;
    let inProgress = this.inProgress;
    for (const name of subset.keys()) {
      const o = this.outcomes.get(name);
      if (o?.unavailable) unavailable--;
      if (o?.inProgress) inProgress--;
    }
    return { unavailable, inProgress };
  }

  private set(name: string, next: Outcome | undefined): void {
    const old = this.outcomes.get(name);
    if (old) {
      if (old.unavailable) this.unavailable--;
      if (old.inProgress) this.inProgress--;
      if (old.state !== undefined) this.counts.set(old.state, this.counts.get(old.state)! - 1);
      if (old.state !== undefined && this.counts.get(old.state) === 0) this.counts.delete(old.state);
      if (old.waiting) this.waiting.delete(name);
      this.freeWaiting.delete(name);
      if (old.outdated) this.outdated.delete(name);
      if (old.failed !== undefined) this.failed.delete(name);
      this.busy.delete(name);
    }
    if (!next) {
      this.outcomes.delete(name);
      return;
    }
    this.outcomes.set(name, next);
    if (next.unavailable) this.unavailable++;
    if (next.inProgress) this.inProgress++;
    if (next.state !== undefined) this.counts.set(next.state, (this.counts.get(next.state) ?? 0) + 1);
    if (next.waiting) {
      this.waiting.add(name);
      if (next.cost === 0) this.freeWaiting.add(name);
    }
    if (next.outdated) this.outdated.add(name);
    if (next.failed !== undefined) this.failed.add(name);
    if (next.inProgress) this.busy.add(name);
  }
}

/** Names kept in order as they come and go (binary search; a few thousand names move a few µs). */
class SortedNames {
  private readonly list: string[] = [];

  add(name: string): void {
    const i = this.index(name);
    if (this.list[i] !== name) this.list.splice(i, 0, name);
  }

  delete(name: string): void {
    const i = this.index(name);
    if (this.list[i] === name) this.list.splice(i, 1);
  }

  names(): readonly string[] {
    return this.list;
  }

  private index(name: string): number {
    let lo = 0;
    let hi = this.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.list[mid]! < name) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
