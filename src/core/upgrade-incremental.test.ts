// The incremental planner's cases the simulation in upgrade.test.ts rarely reaches: a waiting node
// whose start costs nothing of maxUnavailable, and nodes that leave the fleet.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IncrementalUpgradePlanner } from "./upgrade-incremental.ts";
import { planUpgrades, upgradeSettings, type UpgradeNode, type UpgradeSettings } from "./upgrade.ts";

const drv = (ready: boolean, current: boolean) => ({ namespace: "gpu-operator", name: "drv", ready, current, terminating: false });
const view = (name: string, over: Partial<UpgradeNode> = {}): UpgradeNode => ({ name, skip: false, unschedulable: false, cordonedByUpgrade: false, currentPool: "p", desiredPool: "p", currentPoolLive: true, driver: drv(true, true), driverPods: 1, ...over });
const same = (planner: IncrementalUpgradePlanner, nodes: UpgradeNode[], s: UpgradeSettings, now: number) => {
  const got = planner.plan(nodes, s, now);
  const want = planUpgrades(nodes, s, now);
  assert.deepEqual({ ...got, states: undefined }, { ...want, states: undefined });
  return got;
};

test("IncrementalUpgradePlanner: a waiting node whose driver is not Ready starts once a parallel slot frees, though its own view did not change", () => {
  const s: UpgradeSettings = { ...upgradeSettings({ maxParallelUpgrades: 1, maxUnavailable: 5 }, 3) };
  const planner = new IncrementalUpgradePlanner();
  const a1 = view("a", { state: "validation-required", stateSince: 0, unschedulable: true, cordonedByUpgrade: true, driver: drv(false, true) });
  // b: an outdated driver that is not Ready either, so starting it costs nothing of maxUnavailable; only the parallel limit holds it.
  const b = view("b", { driver: drv(false, false) });
  const first = same(planner, [a1, b], s, 1000);
  assert.deepEqual(first.waiting, ["b"]);
  // a's new driver is Ready: it finishes (uncordon, done). b is unchanged, and still waits this pass.
  const a2 = { ...a1, driver: drv(true, true) };
  same(planner, [a2, b], s, 2000);
  // The cache shows a done: a parallel slot is free, and b, the same object as before, starts.
  const a3 = { ...a2, state: "upgrade-done", unschedulable: false, cordonedByUpgrade: false };
  const third = same(planner, [a3, b], s, 3000);
  assert.ok(third.actions.some((x) => x.kind === "cordon" && x.node === "b"), JSON.stringify(third.actions));
});

test("IncrementalUpgradePlanner: a node that leaves takes its part of the counts, the waiting list and the budget with it", () => {
  const s: UpgradeSettings = { ...upgradeSettings({ maxParallelUpgrades: 0, maxUnavailable: 1 }, 3) };
  const planner = new IncrementalUpgradePlanner();
  const a = view("a", { state: "validation-required", stateSince: 0, unschedulable: true, cordonedByUpgrade: true, driver: drv(false, true) });
  const b = view("b", { driver: drv(true, false) });
  const c = view("c", { state: "upgrade-failed", failedReason: "no", driver: drv(false, false) });
  const first = same(planner, [a, b, c], s, 1000);
  assert.deepEqual(first.waiting, ["b"]);
  assert.equal(first.failed.length, 1);
  // a and c are gone: b has the budget to itself and starts; nothing is failed any more.
  const second = same(planner, [b], s, 2000);
  assert.deepEqual(second.waiting, []);
  assert.deepEqual(second.failed, []);
  assert.deepEqual(second.counts, { "pod-deletion-required": 1 }, "b started (it waits for its pod list)");
});

test("IncrementalUpgradePlanner: a node whose new step the cache does not show yet still takes its part of the budget", () => {
  const s: UpgradeSettings = { ...upgradeSettings({ maxParallelUpgrades: 0, maxUnavailable: 1 }, 2) };
  const planner = new IncrementalUpgradePlanner();
  const a = view("a", { driver: drv(true, false) });
  const b = view("b", { driver: drv(true, false) });
  const first = planner.plan([a, b], s, 1000);
  assert.ok(first.actions.some((x) => x.kind === "cordon" && x.node === "a"), "a starts");
  assert.deepEqual(first.waiting, ["b"]);
  // The next pass sees both nodes as before (the watch has not brought a's patch yet): b must not start.
  const second = planner.plan([a, b], s, 2000);
  assert.deepEqual(second.actions, [], JSON.stringify(second.actions));
  assert.equal(second.unavailable, 1);
  // Once the cache shows a in its step, the plan agrees with planUpgrades again.
  const a2 = { ...a, state: "pod-deletion-required", stateSince: 1000, unschedulable: true, cordonedByUpgrade: true };
  same(planner, [a2, b], s, 3000);
});
