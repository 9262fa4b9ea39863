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
