import { test } from "node:test";
import assert from "node:assert/strict";
import { computeStatus, ignoredStatus, type StatusInputs } from "./status.ts";

const pool = (name: string, nodes: string[]) => ({ name, osTag: "ubuntu22.04", image: `r/driver:${name}`, precompiled: false, nodes: nodes.length, nodeNames: nodes });
const base = (over: Partial<StatusInputs> = {}): StatusInputs => ({
  generation: 3,
  namespace: "gpu-operator",
  policyErrors: [],
  nodeProblems: [],
  pools: [pool("a", ["n1", "n2"])],
  daemonSets: new Map([["a", { desired: 2, ready: 2 }]]),
  waiting: [],
  gpuNodes: 2,
  ...over,
});
const T0 = "2026-01-01T00:00:00Z";
const T1 = "2026-01-01T00:05:00Z";

test("every pool's pods ready: state ready, Ready True, Error False", () => {
  const s = computeStatus(base(), undefined, T0);
  assert.equal(s.state, "ready");
  assert.equal(s.observedGeneration, 3);
  assert.deepEqual(s.conditions?.map((c) => [c.type, c.status, c.reason]), [["Ready", "True", "Reconciled"], ["Error", "False", "Reconciled"]]);
  assert.deepEqual(s.pools?.[0], { name: "a", osTag: "ubuntu22.04", image: "r/driver:a", precompiled: false, nodes: 2, desired: 2, readyPods: 2 });
});

test("pods not ready or nodes waiting to move: notReady with DriverNotReady saying which", () => {
  const s = computeStatus(base({ daemonSets: new Map([["a", { desired: 2, ready: 1 }]]), waiting: ["n3"] }), undefined, T0);
  assert.equal(s.state, "notReady");
  const ready = s.conditions!.find((c) => c.type === "Ready")!;
  assert.equal(ready.reason, "DriverNotReady");
  assert.match(ready.message, /a: 1\/2 ready/);
  assert.match(ready.message, /n3/);
});

test("an invalid policy: Error True with its reason, pools kept from before", () => {
  const before = computeStatus(base(), undefined, T0);
  const s = computeStatus(base({ policyErrors: [{ reason: "VersionNotABranch", message: "use 525" }] }), before, T1);
  assert.equal(s.state, "notReady");
  const error = s.conditions!.find((c) => c.type === "Error")!;
  assert.equal(error.reason, "VersionNotABranch");
  assert.match(error.message, /use 525/);
  assert.equal(error.lastTransitionTime, T1);
  assert.deepEqual(s.pools, before.pools);
});

test("nodes missing NFD labels are named in the Error condition", () => {
  const s = computeStatus(base({ nodeProblems: [{ name: "x", problem: "GPU node x has no kernel label" }] }), undefined, T0);
  assert.equal(s.state, "notReady");
  assert.match(s.conditions!.find((c) => c.type === "Error")!.message, /GPU node x/);
});

test("unchanged inputs give an identical status, transition times kept", () => {
  const first = computeStatus(base(), undefined, T0);
  const again = computeStatus(base(), first, T1);
  assert.deepEqual(again, first);
});

test("ignored policies name the active one", () => {
  const s = ignoredStatus("cluster-policy", 1, undefined, T0);
  assert.equal(s.state, "ignored");
  assert.match(s.conditions![0]!.message, /cluster-policy/);
  assert.deepEqual(ignoredStatus("cluster-policy", 1, s, T1), s);
});

test("a node whose kernel changed and that has no image anywhere is said to have no driver, never to keep one", () => {
  // The scenario: g1 booted 5.15.0-70, the registry has no precompiled and no conventional 525 image.
  const s = computeStatus(base({
    missingImages: [{ image: "r/driver:525-5.15.0-70-generic-ubuntu22.04", nodes: ["g1"] }],
    drivers: { fallback: "", keeping: "", noDriver: "g1: no driver (the registry has no precompiled image r/driver:525-5.15.0-70-generic-ubuntu22.04, and no conventional 525 image for ubuntu22.04 either)" },
  }), undefined, T0);
  const ready = s.conditions!.find((c) => c.type === "Ready")!;
  assert.equal(ready.status, "False");
  assert.equal(ready.reason, "NoDriver");
  assert.match(ready.message, /g1: no driver/);
  assert.doesNotMatch(ready.message, /keep/);
  // Without the per-node sentences, a missing image still never claims the nodes keep a driver.
  const bare = computeStatus(base({ missingImages: [{ image: "r/driver:x", nodes: ["g1"] }] }), undefined, T0);
  assert.doesNotMatch(bare.conditions!.find((c) => c.type === "Ready")!.message, /keep the driver they have/);
});

test("nodes that still run their driver are said to keep it; nodes on the fallback are named with the image and why", () => {
  const keeping = computeStatus(base({ drivers: { fallback: "", noDriver: "", keeping: "g2: keeps the driver it runs now (the registry has no precompiled image i)" } }), undefined, T0);
  assert.equal(keeping.conditions![0]!.reason, "PrecompiledImageMissing");
  assert.match(keeping.conditions![0]!.message, /g2: keeps the driver it runs now/);
  const onFallback = computeStatus(base({ drivers: { fallback: "g3: conventional driver r/driver:525.105.17-ubuntu22.04 (fallback: the registry has no precompiled image i)", noDriver: "", keeping: "" } }), undefined, T0);
  assert.equal(onFallback.state, "ready");
  assert.equal(onFallback.conditions![0]!.reason, "ConventionalFallback");
  assert.match(onFallback.conditions![0]!.message, /2 driver pods ready in 1 pools; g3: conventional driver r\/driver:525\.105\.17-ubuntu22\.04 \(fallback/);
});

test("an enabled operand not ready (status.operands, written by the operand controller) keeps the policy notReady", () => {
  const prev = { operands: [{ name: "toolkit", state: "ready" }, { name: "devicePlugin", state: "notReady" }, { name: "gfd", state: "disabled" }] };
  const s = computeStatus(base(), prev, T0);
  assert.equal(s.state, "notReady");
  const ready = s.conditions!.find((c) => c.type === "Ready")!;
  assert.equal(ready.reason, "OperandNotReady");
  assert.match(ready.message, /devicePlugin/);
  assert.doesNotMatch(ready.message, /toolkit|gfd/);
  assert.equal("operands" in s, false, "the driver's status leaves status.operands to the operand controller");
  const all = computeStatus(base(), { operands: [{ name: "toolkit", state: "ready" }, { name: "migManager", state: "unsupported" }, { name: "gfd", state: "disabled" }] }, T0);
  assert.equal(all.state, "ready");
});

const HINT = "Build the missing images with 'gpuop precompiled build' and set driver.repository, or choose another driver branch";
const names = (n: number, prefix = "g") => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);
const readyOf = (s: ReturnType<typeof computeStatus>) => s.conditions!.find((c) => c.type === "Ready")!;
const errorOf = (s: ReturnType<typeof computeStatus>) => s.conditions!.find((c) => c.type === "Error")!;

test("an invalid policy: every error in the message, the first one's reason, the last valid pools and upgrades kept", () => {
  const upgrades = { counts: { "upgrade-done": 2 }, pending: [], failed: [], outdated: [] };
  const before = computeStatus(base({ upgrades }), undefined, T0);
  const s = computeStatus(base({ policyErrors: [{ reason: "VersionNotABranch", message: "use 525" }, { reason: "Other", message: "and fix x" }] }), before, T1);
  assert.deepEqual(errorOf(s), { type: "Error", status: "True", reason: "VersionNotABranch", message: "use 525; and fix x. Existing driver DaemonSets are left as they are until the policy is fixed.", observedGeneration: 3, lastTransitionTime: T1 });
  assert.deepEqual(readyOf(s), { type: "Ready", status: "False", reason: "InvalidPolicy", message: "the policy is invalid; see the Error condition", observedGeneration: 3, lastTransitionTime: T1 });
  assert.deepEqual(s.upgrades, before.upgrades);
  // With nothing from before: no pools, no upgrades made up.
  const fresh = computeStatus(base({ policyErrors: [{ reason: "R", message: "m" }] }), undefined, T0);
  assert.deepEqual(fresh.pools, []);
  assert.equal("upgrades" in fresh, false);
  assert.equal("upgrades" in computeStatus(base(), undefined, T0), false);
});

test("node problems are all named, in order; without any the Error condition is False and empty", () => {
  const s = computeStatus(base({ nodeProblems: [{ name: "x", problem: "GPU node x has no kernel label" }, { name: "y", problem: "GPU node y has no OS label" }] }), undefined, T0);
  assert.deepEqual(errorOf(s), { type: "Error", status: "True", reason: "NFDLabelsMissing", message: "GPU node x has no kernel label; GPU node y has no OS label", observedGeneration: 3, lastTransitionTime: T0 });
  assert.equal(readyOf(s).status, "True", "the driver itself is ready");
  assert.deepEqual(errorOf(computeStatus(base(), undefined, T0)), { type: "Error", status: "False", reason: "Reconciled", message: "", observedGeneration: 3, lastTransitionTime: T0 });
});

test("a pool is ready only with a DaemonSet that wants and runs a ready pod on each of its nodes", () => {
  const state = (daemonSets: Map<string, { desired: number; ready: number }>, pools: StatusInputs["pools"] = [pool("a", ["n1", "n2"])]) => computeStatus(base({ daemonSets, pools }), undefined, T0);
  const noDs = state(new Map());
  assert.deepEqual(noDs.pools?.[0], { name: "a", osTag: "ubuntu22.04", image: "r/driver:a", precompiled: false, nodes: 2, desired: 0, readyPods: 0 });
  assert.equal(readyOf(noDs).message, "a: 0/2 ready");
  assert.equal(state(new Map([["a", { desired: 3, ready: 2 }]])).state, "notReady", "a DaemonSet wanting another node is not settled");
  assert.equal(state(new Map([["a", { desired: 2, ready: 1 }]])).state, "notReady");
  assert.equal(state(new Map([["a", { desired: 2, ready: 3 }]])).state, "ready");
  // A pool without a node count counts as none.
  const { nodes: _n, ...noCount } = pool("b", []);
  assert.equal(state(new Map([["b", { desired: 0, ready: 0 }]]), [noCount]).state, "ready");
  assert.equal(readyOf(state(new Map([["b", { desired: 1, ready: 0 }]]), [noCount])).message, "b: 0/0 ready");
});

test("Ready messages, word for word, for each state of the driver", () => {
  const two = [pool("a", ["n1", "n2"]), pool("b", ["n3"])];
  const ds = new Map([["a", { desired: 2, ready: 2 }], ["b", { desired: 1, ready: 1 }]]);
  const ok = computeStatus(base({ pools: two, daemonSets: ds, gpuNodes: 3 }), undefined, T0);
  assert.deepEqual(readyOf(ok), { type: "Ready", status: "True", reason: "Reconciled", message: "3 driver pods ready in 2 pools", observedGeneration: 3, lastTransitionTime: T0 });
  const outdated = computeStatus(base({ pools: two, daemonSets: ds, upgrades: { counts: { "upgrade-done": 3 }, pending: [], failed: [], outdated: ["g1", "g2"] } }), undefined, T0);
  assert.equal(readyOf(outdated).message, "3 driver pods ready in 2 pools; outdated driver left in place (autoUpgrade false or nvidia.com/gpu-driver-upgrade.skip) on g1, g2");
  assert.equal(outdated.state, "ready");
  const none = computeStatus(base({ pools: [], daemonSets: new Map(), gpuNodes: 0 }), undefined, T0);
  assert.deepEqual(readyOf(none), { type: "Ready", status: "True", reason: "NoGPUNodes", message: "no GPU nodes in the cluster; nothing to deploy", observedGeneration: 3, lastTransitionTime: T0 });
  const notReady = computeStatus(base({
    pools: two,
    daemonSets: new Map([["a", { desired: 2, ready: 1 }], ["b", { desired: 1, ready: 0 }]]),
    waiting: names(12, "w"),
    drivers: { fallback: "g9: conventional driver x", noDriver: "", keeping: "" },
  }), undefined, T0);
  assert.equal(readyOf(notReady).reason, "DriverNotReady");
  assert.equal(readyOf(notReady).message, "a: 1/2 ready; b: 0/1 ready; waiting to change driver: w1, w2, w3, w4, w5, w6, w7, w8, w9, w10 and 2 more; g9: conventional driver x");
  const tenWaiting = computeStatus(base({ waiting: names(10, "w") }), undefined, T0);
  assert.equal(readyOf(tenWaiting).message, "waiting to change driver: w1, w2, w3, w4, w5, w6, w7, w8, w9, w10");
});

test("nodes being upgraded keep the policy not ready; required, done and failed states are not in progress", () => {
  const inProgress = ["cordon-required", "wait-for-jobs-required", "pod-deletion-required", "drain-required", "pod-restart-required", "validation-required", "uncordon-required"];
  for (const st of inProgress) {
    const s = computeStatus(base({ upgrades: { counts: { [st]: 1 }, pending: [], failed: [], outdated: [] } }), undefined, T0);
    assert.equal(readyOf(s).message, "driver upgrade in progress on 1 nodes", st);
  }
  const several = computeStatus(base({ upgrades: { counts: { "drain-required": 2, "uncordon-required": 3 }, pending: [], failed: [], outdated: [] } }), undefined, T0);
  assert.equal(readyOf(several).message, "driver upgrade in progress on 5 nodes");
  const settled = computeStatus(base({ upgrades: { counts: { "upgrade-required": 4, "upgrade-done": 2 }, pending: ["g1"], failed: [], outdated: [] } }), undefined, T0);
  assert.equal(settled.state, "ready");
});

test("failed upgrades: at most five named with their reason, and how to retry", () => {
  const failed = names(7).map((node) => ({ node, reason: `drain of ${node} timed out` }));
  const s = computeStatus(base({ upgrades: { counts: { "upgrade-failed": 7 }, pending: [], failed, outdated: [] } }), undefined, T0);
  assert.deepEqual(readyOf(s), {
    type: "Ready",
    status: "False",
    reason: "DriverUpgradeFailed",
    message: "driver upgrade failed on g1 (drain of g1 timed out), g2 (drain of g2 timed out), g3 (drain of g3 timed out), g4 (drain of g4 timed out), g5 (drain of g5 timed out) and 2 more; fix the cause, then retry with 'kubectl label node <node> nvidia.com/gpu-driver-upgrade-state=upgrade-required --overwrite'",
    observedGeneration: 3,
    lastTransitionTime: T0,
  });
  const five = computeStatus(base({ upgrades: { counts: {}, pending: [], failed: failed.slice(0, 5), outdated: [] } }), undefined, T0);
  assert.match(readyOf(five).message, /g5 \(drain of g5 timed out\); fix the cause/);
});

test("missing images and nodes off their precompiled driver: the exact sentences and which one wins", () => {
  const missing = [{ image: "r/driver:550-5.15.0-70-generic-ubuntu22.04", nodes: names(11) }, { image: "r/driver:550-6.8.0-40-generic-ubuntu24.04", nodes: ["h1"] }];
  const s = computeStatus(base({ missingImages: missing }), undefined, T0);
  assert.deepEqual([readyOf(s).reason, readyOf(s).message], [
    "PrecompiledImageMissing",
    `the registry has no r/driver:550-5.15.0-70-generic-ubuntu22.04 (for g1, g2, g3, g4, g5, g6, g7, g8, g9, g10 and 1 more), r/driver:550-6.8.0-40-generic-ubuntu24.04 (for h1); those nodes are not moved to it. ${HINT}`,
  ]);
  const drivers = { noDriver: "g1: no driver (x)", keeping: "g2: keeps the driver it runs now (y)", fallback: "g3: conventional driver z" };
  assert.deepEqual([readyOf(computeStatus(base({ drivers, missingImages: missing }), undefined, T0)).reason, readyOf(computeStatus(base({ drivers }), undefined, T0)).message], [
    "NoDriver",
    `g1: no driver (x); g2: keeps the driver it runs now (y); g3: conventional driver z. ${HINT}`,
  ]);
  const keeping = computeStatus(base({ drivers: { ...drivers, noDriver: "" } }), undefined, T0);
  assert.deepEqual([readyOf(keeping).reason, readyOf(keeping).message], ["PrecompiledImageMissing", `g2: keeps the driver it runs now (y); g3: conventional driver z. ${HINT}`]);
  assert.equal(readyOf(computeStatus(base({ drivers: { noDriver: "g1: no driver (x)", keeping: "", fallback: "" } }), undefined, T0)).message, `g1: no driver (x). ${HINT}`);
  // Nodes on the fallback have a driver: a missing image they fell back from does not make the policy not ready.
  const onFallback = computeStatus(base({ missingImages: missing, drivers: { noDriver: "", keeping: "", fallback: "g3: conventional driver z" } }), undefined, T0);
  assert.deepEqual([onFallback.state, readyOf(onFallback).reason], ["ready", "ConventionalFallback"]);
  // A failed upgrade is reported only once no image is missing.
  const both = computeStatus(base({ missingImages: missing, upgrades: { counts: {}, pending: [], failed: [{ node: "g1", reason: "r" }], outdated: [] } }), undefined, T0);
  assert.equal(readyOf(both).reason, "PrecompiledImageMissing");
  const noGpuButFailed = computeStatus(base({ gpuNodes: 0, upgrades: { counts: {}, pending: [], failed: [{ node: "g1", reason: "r" }], outdated: [] } }), undefined, T0);
  assert.equal(readyOf(noGpuButFailed).reason, "DriverUpgradeFailed");
});

test("operands in error or not ready turn a ready driver into OperandNotReady, naming them all; a driver not ready keeps its own reason", () => {
  const operands = [{ name: "toolkit", state: "error" }, { name: "gfd", state: "ready" }, { name: "dcgmExporter", state: "notReady" }];
  const s = computeStatus(base(), { operands }, T0);
  assert.deepEqual([readyOf(s).reason, readyOf(s).message], ["OperandNotReady", "driver ready; not ready: toolkit, dcgmExporter"]);
  const driverDown = computeStatus(base({ daemonSets: new Map([["a", { desired: 2, ready: 0 }]]) }), { operands }, T0);
  assert.equal(readyOf(driverDown).reason, "DriverNotReady");
});

test("transition times change only with a condition's status, each condition on its own", () => {
  const first = computeStatus(base(), undefined, T0);
  const broken = computeStatus(base({ daemonSets: new Map([["a", { desired: 2, ready: 1 }]]) }), first, T1);
  assert.equal(readyOf(broken).lastTransitionTime, T1);
  assert.equal(errorOf(broken).lastTransitionTime, T0, "Error stayed False");
  const T2 = "2026-01-01T00:09:00Z";
  // Still not ready for another reason: the time it became not ready stays.
  const stillBroken = computeStatus(base({ waiting: ["n9"] , daemonSets: new Map([["a", { desired: 2, ready: 2 }]]) }), broken, T2);
  assert.equal(readyOf(stillBroken).lastTransitionTime, T1);
  assert.notEqual(readyOf(stillBroken).message, readyOf(broken).message);
  assert.equal(readyOf(computeStatus(base(), stillBroken, T2)).lastTransitionTime, T2);
});

test("generation and namespace are carried; without a generation none is written", () => {
  const s = computeStatus(base({ generation: 7, namespace: "gpu-ops" }), undefined, T0);
  assert.equal(s.namespace, "gpu-ops");
  assert.equal(s.observedGeneration, 7);
  assert.deepEqual(s.conditions?.map((c) => c.observedGeneration), [7, 7]);
  const { generation: _g, ...noGen } = base();
  const without = computeStatus(noGen, undefined, T0);
  assert.equal("observedGeneration" in without, false);
});

test("upgrades in the status: every state with zeros, lists capped at 50 while counts stay exact", () => {
  const failed = names(60).map((node) => ({ node, reason: "r" }));
  const s = computeStatus(base({ upgrades: { counts: { "upgrade-required": 60, "upgrade-failed": 60 }, pending: names(60, "p"), failed, outdated: names(60, "o") } }), undefined, T0);
  assert.deepEqual(s.upgrades?.nodesByState, {
    "upgrade-required": 60, "cordon-required": 0, "wait-for-jobs-required": 0, "pod-deletion-required": 0, "drain-required": 0,
    "pod-restart-required": 0, "validation-required": 0, "uncordon-required": 0, "upgrade-done": 0, "upgrade-failed": 60,
  });
  assert.deepEqual(s.upgrades?.pending, names(50, "p"));
  assert.deepEqual(s.upgrades?.failed, failed.slice(0, 50));
  assert.deepEqual(s.upgrades?.outdated, names(50, "o"));
});

test("ignored: the active policy named word for word, the time kept only while Ready was already False", () => {
  const s = ignoredStatus("first-policy", 4, undefined, T0);
  assert.deepEqual(s, {
    state: "ignored",
    observedGeneration: 4,
    conditions: [{ type: "Ready", status: "False", reason: "Ignored", message: "another ClusterPolicy, first-policy, is older and active; only one policy is acted on", observedGeneration: 4, lastTransitionTime: T0 }],
  });
  const wasReady = computeStatus(base(), undefined, T0);
  assert.equal(ignoredStatus("first-policy", 4, wasReady, T1).conditions![0]!.lastTransitionTime, T1);
  assert.equal(ignoredStatus("first-policy", 4, s, T1).conditions![0]!.lastTransitionTime, T0);
  assert.equal("observedGeneration" in ignoredStatus("first-policy", undefined, undefined, T0), false);
});

test("every not-ready Ready condition says False, not just anything but True", () => {
  const statuses = [
    computeStatus(base({ drivers: { noDriver: "", keeping: "g2: keeps (y)", fallback: "" } }), undefined, T0),
    computeStatus(base({ missingImages: [{ image: "i", nodes: ["g1"] }] }), undefined, T0),
    computeStatus(base({ waiting: ["g1"] }), undefined, T0),
    computeStatus(base(), { operands: [{ name: "gfd", state: "notReady" }] }, T0),
  ];
  assert.deepEqual(statuses.map((s) => [readyOf(s).reason, readyOf(s).status]), [
    ["PrecompiledImageMissing", "False"],
    ["PrecompiledImageMissing", "False"],
    ["DriverNotReady", "False"],
    ["OperandNotReady", "False"],
  ]);
});

test("the last upgrade counts are carried only while the policy is invalid", () => {
  const before = computeStatus(base({ upgrades: { counts: { "upgrade-done": 2 }, pending: [], failed: [], outdated: [] } }), undefined, T0);
  assert.equal("upgrades" in computeStatus(base(), before, T1), false);
});

test("ignored: the Ready condition is found by type among the others", () => {
  const previous = { conditions: [{ type: "Error", status: "False" as const, reason: "Reconciled", message: "", lastTransitionTime: T0 }, { type: "Ready", status: "True" as const, reason: "Reconciled", message: "", lastTransitionTime: T0 }] };
  assert.equal(ignoredStatus("first", 1, previous, T1).conditions![0]!.lastTransitionTime, T1);
  assert.equal(ignoredStatus("first", 1, {}, T1).conditions![0]!.lastTransitionTime, T1);
});

// Surviving mutants in status.ts, equivalent: `inputs.drivers ?? {...}` -> `?? {}` (missing sentences are falsy either
// way) and `previous?.operands ?? []` -> a one-element array of text (a string has no state, so nothing is not ready).
