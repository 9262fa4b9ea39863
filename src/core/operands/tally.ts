// The operands' per-node states summed over the cluster, kept up to date one node at a time, so
// a controller pass that looks at the nodes that changed can still report the whole cluster.
import { OPERANDS, type OperandInfo, type OperandKey } from "./common.ts";

/** Where a GPU node stands with an operand it is meant to run: its pod Ready, its gate open and the pod not Ready yet, or its gate closed. */
export type OperandNodeState = "ready" | "starting" | "waiting";
export type OperandNodeStates = Partial<Record<OperandKey, OperandNodeState>>;

/** How many nodes a status lists by name (the counts cover them all). */
export const MAX_LISTED = 20;

/** Per operand: the GPU nodes meant to run it, how many wait for their gate and how many have a pod not Ready yet, and the first of each by name. */
export interface OperandSplit {
  info: OperandInfo;
  enabled: boolean;
  meant: number;
  waiting: number;
  notReady: number;
  /** The first MAX_LISTED waiting nodes, sorted by name. */
  waitingNames: string[];
  notReadyNames: string[];
}

/** Servable GPU nodes' operand states, by node; counts and name sets per operand follow each change. */
export class OperandTally {
  private readonly byNode = new Map<string, OperandNodeStates>();
  private readonly meant = new Map<OperandKey, number>();
  private readonly inState = new Map<OperandKey, { waiting: Set<string>; starting: Set<string> }>(OPERANDS.map((o) => [o.key, { waiting: new Set(), starting: new Set() }]));

  /** A node's states now; undefined for a node that no longer counts (gone, not a GPU node, not servable). */
  set(name: string, states: OperandNodeStates | undefined): void {
    const old = this.byNode.get(name);
    if (old === states) return;
    if (old) this.count(name, old, -1);
    if (states) {
      this.byNode.set(name, states);
      this.count(name, states, 1);
    } else this.byNode.delete(name);
  }

  private count(name: string, states: OperandNodeStates, sign: 1 | -1): void {
    for (const [key, state] of Object.entries(states) as [OperandKey, OperandNodeState][]) {
      this.meant.set(key, (this.meant.get(key) ?? 0) + sign);
      const sets = this.inState.get(key)!;
      const set = state === "waiting" ? sets.waiting : state === "starting" ? sets.starting : undefined;
      if (sign > 0) set?.add(name);
      else set?.delete(name);
    }
  }

  /** The split of every operand; states of operands not enabled are not counted. */
  split(enabled: ReadonlySet<OperandKey>): OperandSplit[] {
    return OPERANDS.map((info) => {
      if (!enabled.has(info.key)) return { info, enabled: false, meant: 0, waiting: 0, notReady: 0, waitingNames: [], notReadyNames: [] };
      const { waiting, starting } = this.inState.get(info.key)!;
      return { info, enabled: true, meant: this.meant.get(info.key) ?? 0, waiting: waiting.size, notReady: starting.size, waitingNames: firstByName(waiting, MAX_LISTED), notReadyNames: firstByName(starting, MAX_LISTED) };
    });
  }
}

/** The `n` smallest names, sorted: one pass over the set, without sorting all of it. */
export function firstByName(names: Iterable<string>, n: number): string[] {
  const out: string[] = [];
  for (const name of names) {
    if (out.length === n && name >= out[n - 1]!) continue;
    let i = out.length;
    while (i > 0 && out[i - 1]! > name) i--;
    out.splice(i, 0, name);
    if (out.length > n) out.pop();
  }
  return out;
}
