import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { nodeRollouts, planRollout, poolSelects, POOL_NODE_LABEL, readyDriverKeys, resolveMaxUnavailable, type NodeRollout } from "./rollout.ts";

test("resolveMaxUnavailable takes counts and percentages, rounding up, never below one", () => {
  assert.equal(resolveMaxUnavailable(undefined, 10), 3);
  assert.equal(resolveMaxUnavailable("25%", 10), 3);
  assert.equal(resolveMaxUnavailable("100%", 7), 7);
  assert.equal(resolveMaxUnavailable(0, 10), 1);
  assert.equal(resolveMaxUnavailable(4, 10), 4);
  assert.equal(resolveMaxUnavailable("1%", 3), 1);
  assert.equal(resolveMaxUnavailable("2", 3), 2);
});

test("new nodes and nodes whose pool is gone are assigned at once", () => {
  const plan = planRollout(
    [
      { name: "new", desiredPool: "p", driverReady: false },
      { name: "orphan", currentPool: "gone", desiredPool: "p", driverReady: true },
    ],
    new Set(["p"]),
    1,
  );
  assert.deepEqual([...plan.moves], [["new", "p"], ["orphan", "p"]]);
  assert.deepEqual(plan.waiting, []);
});

test("a mode switch moves nodes with a working driver a budget at a time", () => {
  const nodes: NodeRollout[] = ["a", "b", "c", "d"].map((name) => ({ name, currentPool: "old", desiredPool: "new", driverReady: true }));
  const first = planRollout(nodes, new Set(["old", "new"]), 1);
  assert.deepEqual([...first.moves], [["a", "new"]]);
  assert.deepEqual(first.waiting, ["b", "c", "d"]);
  // While a's new driver is not ready, nothing else moves.
  const during = planRollout(
    [{ name: "a", currentPool: "new", desiredPool: "new", driverReady: false }, ...nodes.slice(1)],
    new Set(["old", "new"]),
    1,
  );
  assert.equal(during.moves.size, 0);
  // Once it is, the next one goes.
  const after = planRollout(
    [{ name: "a", currentPool: "new", desiredPool: "new", driverReady: true }, ...nodes.slice(1)],
    new Set(["old", "new"]),
    1,
  );
  assert.deepEqual([...after.moves], [["b", "new"]]);
});

test("nodes that should no longer get a driver lose their label at once", () => {
  const plan = planRollout([{ name: "x", currentPool: "p", driverReady: true }], new Set(["p"]), 1);
  assert.deepEqual([...plan.moves], [["x", null]]);
});

test("property: never more nodes without a ready driver than the budget allows, and every node is moved or waiting", () => {
  const node = fc.record({
    name: fc.stringMatching(/^[a-z]{1,6}$/),
    currentPool: fc.option(fc.constantFrom("p1", "p2", "p3"), { nil: undefined }),
    desiredPool: fc.option(fc.constantFrom("p1", "p2"), { nil: undefined }),
    driverReady: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.uniqueArray(node, { selector: (n) => n.name, maxLength: 30 }), fc.integer({ min: 1, max: 10 }), (nodes, max) => {
      const existing = new Set(["p1", "p2"]);
      const plan = planRollout(nodes, existing, max);
      const needing = nodes.filter((n) => n.currentPool !== n.desiredPool);
      for (const n of needing) assert.ok(plan.moves.has(n.name) !== plan.waiting.includes(n.name));
      // Nodes with a working driver that we take it from: only within budget.
      const alreadyDown = nodes.filter((n) => n.desiredPool !== undefined && (n.currentPool !== n.desiredPool ? !(n.currentPool && existing.has(n.currentPool) && n.driverReady) : !n.driverReady)).length;
      const costlyMoves = [...plan.moves].filter(([name, to]) => {
        const n = nodes.find((x) => x.name === name)!;
        return to !== null && n.currentPool !== undefined && existing.has(n.currentPool) && n.driverReady;
      }).length;
      assert.ok(costlyMoves <= Math.max(0, max - alreadyDown));
      if (plan.waiting.length > 0) assert.equal(costlyMoves, Math.max(0, max - alreadyDown));
    }),
  );
});

test("a pool selects a node while every selector label but its own pool label matches", () => {
  const selector = { "feature.node.kubernetes.io/kernel-version.full": "5.15.0-69-generic", [POOL_NODE_LABEL]: "p" };
  assert.equal(poolSelects(selector, { "feature.node.kubernetes.io/kernel-version.full": "5.15.0-69-generic" }), true);
  assert.equal(poolSelects(selector, { "feature.node.kubernetes.io/kernel-version.full": "5.15.0-70-generic", [POOL_NODE_LABEL]: "p" }), false);
  assert.equal(poolSelects({}, {}), true);
});

test("nodeRollouts: desired pools, readiness from pods, and held nodes kept where their driver still runs", () => {
  const node = (name: string, labels: Record<string, string>) => ({ metadata: { name, labels } });
  const kernel = "feature.node.kubernetes.io/kernel-version.full";
  const rows = nodeRollouts({
    nodes: [
      node("new", {}),
      node("moving", { [POOL_NODE_LABEL]: "old" }),
      node("held", { [POOL_NODE_LABEL]: "old", [kernel]: "5.15.0-69-generic" }),
      node("held-upgraded", { [POOL_NODE_LABEL]: "old", [kernel]: "5.15.0-70-generic" }),
      node("unrelated", {}),
    ],
    pools: [{ name: "p", nodes: ["new", "moving"] }],
    hold: new Set(["held", "held-upgraded"]),
    liveSelectors: new Map([["old", { [kernel]: "5.15.0-69-generic", [POOL_NODE_LABEL]: "old" }]]),
    readyDrivers: readyDriverKeys([
      { metadata: { labels: { [POOL_NODE_LABEL]: "old" } }, spec: { nodeName: "moving" }, status: { conditions: [{ type: "Ready", status: "True" }] } },
      { metadata: { ownerReferences: [{ kind: "DaemonSet", name: "old" }] }, spec: { nodeName: "held" }, status: { conditions: [{ type: "Ready", status: "True" }] } },
      { metadata: { labels: { [POOL_NODE_LABEL]: "old" } }, spec: { nodeName: "held-upgraded" }, status: { conditions: [{ type: "Ready", status: "False" }] } },
    ]),
  });
  assert.deepEqual(rows, [
    { name: "new", desiredPool: "p", driverReady: false },
    { name: "moving", currentPool: "old", desiredPool: "p", driverReady: true },
    { name: "held", currentPool: "old", desiredPool: "old", driverReady: true },
    // Its kernel changed: the old DaemonSet no longer runs there, so there is nothing to keep.
    { name: "held-upgraded", currentPool: "old", driverReady: false },
  ]);
});

test("the pool label is the one the DaemonSets select and the controller writes", () => {
  assert.equal(POOL_NODE_LABEL, "gpuop.nvidia.com/driver-pool");
});

test("resolveMaxUnavailable: a bad or zero value is a budget of one, never zero (a rollout must move)", () => {
  assert.equal(resolveMaxUnavailable("0", 10), 1);
  assert.equal(resolveMaxUnavailable("0%", 10), 1);
  assert.equal(resolveMaxUnavailable("-3", 10), 1);
  assert.equal(resolveMaxUnavailable("2.5", 10), 1);
  assert.equal(resolveMaxUnavailable("half", 10), 1);
  assert.equal(resolveMaxUnavailable(2.9, 10), 2);
  // A percentage is the whole value, spaces aside.
  assert.equal(resolveMaxUnavailable(" 50% ", 10), 5);
  assert.equal(resolveMaxUnavailable("x50%", 10), 1);
  assert.equal(resolveMaxUnavailable("50%x", 10), 1);
  assert.equal(resolveMaxUnavailable("30%", 5), 2);
});

test("nodes move in name order, whatever order they are listed in", () => {
  const nodes: NodeRollout[] = ["d", "b", "a", "c"].map((name) => ({ name, currentPool: "old", desiredPool: "new", driverReady: true }));
  const plan = planRollout(nodes, new Set(["old", "new"]), 1);
  assert.deepEqual([...plan.moves], [["a", "new"]]);
  assert.deepEqual(plan.waiting, ["b", "c", "d"]);
});

test("nodeRollouts: only a held node keeps its pool; a node without a name is still listed", () => {
  const kernel = "feature.node.kubernetes.io/kernel-version.full";
  const rows = nodeRollouts({
    // Its old pool still selects it, but it is not held: it goes where the policy wants it.
    nodes: [{ metadata: { name: "selected", labels: { [POOL_NODE_LABEL]: "old", [kernel]: "5.15.0-69-generic" } } }, { metadata: { labels: { [POOL_NODE_LABEL]: "old" } } }],
    pools: [{ name: "p", nodes: ["selected"] }],
    hold: new Set(),
    liveSelectors: new Map([["old", { [kernel]: "5.15.0-69-generic" }]]),
    readyDrivers: new Set(["old/selected"]),
  });
  assert.deepEqual(rows, [
    { name: "selected", currentPool: "old", desiredPool: "p", driverReady: true },
    { name: "", currentPool: "old", driverReady: false },
  ]);
});

test("readyDriverKeys: only Ready pods with a pool and a node count", () => {
  const ready = { conditions: [{ type: "PodScheduled", status: "True" }, { type: "Ready", status: "True" }] };
  const keys = readyDriverKeys([
    { metadata: { labels: { [POOL_NODE_LABEL]: "p" } }, spec: { nodeName: "several-conditions" }, status: ready },
    { metadata: { labels: { [POOL_NODE_LABEL]: "p" } }, spec: { nodeName: "initialized-only" }, status: { conditions: [{ type: "Initialized", status: "True" }, { type: "Ready", status: "False" }] } },
    { metadata: { labels: { [POOL_NODE_LABEL]: "p" } }, spec: { nodeName: "no-conditions" }, status: {} },
    { metadata: { labels: { [POOL_NODE_LABEL]: "p" } }, spec: { nodeName: "no-status" } },
    { metadata: { ownerReferences: [{ kind: "ReplicaSet", name: "rs" }] }, spec: { nodeName: "not-a-daemonset" }, status: ready },
    { metadata: { ownerReferences: [{ kind: "Node", name: "n" }, { kind: "DaemonSet", name: "owner" }] }, spec: { nodeName: "second-owner" }, status: ready },
    { metadata: {}, spec: { nodeName: "no-pool" }, status: ready },
    { metadata: { labels: { [POOL_NODE_LABEL]: "p" } }, status: ready },
    { metadata: { labels: { [POOL_NODE_LABEL]: "p" } }, spec: {}, status: ready },
  ]);
  assert.deepEqual([...keys].sort(), ["owner/second-owner", "p/several-conditions"]);
});

test("removing a driver costs no budget, and a node with no pool either way is not counted as down", () => {
  const plan = planRollout(
    [
      { name: "a", currentPool: "old", desiredPool: "new", driverReady: true },
      { name: "x", currentPool: "old", driverReady: true },
      { name: "y", driverReady: false },
    ],
    new Set(["old", "new"]),
    1,
  );
  assert.deepEqual([...plan.moves].sort(), [["a", "new"], ["x", null]]);
  assert.deepEqual(plan.waiting, []);
});

// Surviving mutants in rollout.ts, each equivalent (no input tells it apart):
// - planRollout `n.currentPool !== undefined &&` -> true: existingPools.has(undefined) is false anyway.
// - nodeRollouts `currentPool !== undefined ? liveSelectors.get(currentPool)` -> true: get(undefined) is undefined.
// - nodeRollouts `&& currentPool !== undefined &&` (hold) -> true: without a current pool there is no selector.
// - nodeRollouts driverReady `currentPool !== undefined &&` -> true: readyDriverKeys never makes an "undefined/<node>" key.
