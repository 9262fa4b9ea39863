import { test } from "node:test";
import assert from "node:assert/strict";
import { nodeRollout, poolSelects, POOL_NODE_LABEL, readyDriverKeys, resolveMaxUnavailable, type NodeRollout } from "./rollout.ts";

/** nodeRollout over a fleet: the desired pool of each node from the pools, and each DaemonSet's selector by name. */
function nodeRollouts(o: {
  nodes: readonly { metadata: { name?: string; labels?: Record<string, string> } }[];
  pools: readonly { name: string; nodes: readonly string[] }[];
  hold: ReadonlySet<string>;
  liveSelectors: ReadonlyMap<string, Readonly<Record<string, string>>>;
  readyDrivers: ReadonlySet<string>;
}): NodeRollout[] {
  const desired = new Map(o.pools.flatMap((p) => p.nodes.map((n) => [n, p.name] as const)));
  return o.nodes.flatMap((n) => nodeRollout(n, desired, o.hold, (pool) => o.liveSelectors.get(pool), o.readyDrivers) ?? []);
}

test("resolveMaxUnavailable takes counts and percentages, rounding up, never below one", () => {
  assert.equal(resolveMaxUnavailable(undefined, 10), 3);
  assert.equal(resolveMaxUnavailable("25%", 10), 3);
  assert.equal(resolveMaxUnavailable("100%", 7), 7);
  assert.equal(resolveMaxUnavailable(0, 10), 1);
  assert.equal(resolveMaxUnavailable(4, 10), 4);
  assert.equal(resolveMaxUnavailable("1%", 3), 1);
  assert.equal(resolveMaxUnavailable("2", 3), 2);
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

// Surviving mutants in rollout.ts, each equivalent (no input tells it apart):
// - nodeRollouts `currentPool !== undefined ? liveSelectors.get(currentPool)` -> true: get(undefined) is undefined.
// - nodeRollouts `&& currentPool !== undefined &&` (hold) -> true: without a current pool there is no selector.
// - nodeRollouts driverReady `currentPool !== undefined &&` -> true: readyDriverKeys never makes an "undefined/<node>" key.
