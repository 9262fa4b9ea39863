import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  digestOf,
  driverPodCurrent,
  driverTemplateHash,
  IN_PROGRESS_STATES,
  needsPods,
  podsNeededAgain,
  recheckAfterMs,
  podsToEvict,
  parseSelector,
  planUpgrades,
  upgradeSettings,
  TEMPLATE_HASH_ANNOTATION,
  type NodePod,
  type UpgradeAction,
  type UpgradeNode,
  type UpgradePlan,
  type UpgradeSettings,
} from "./upgrade.ts";
import { IncrementalUpgradePlanner } from "./upgrade-incremental.ts";

const settings = (over: Partial<UpgradeSettings> = {}): UpgradeSettings => ({ ...upgradeSettings(undefined, 4), ...over });
const ready = (current = true) => ({ namespace: "gpu-operator", name: "drv", ready: true, current, terminating: false });
const node = (name: string, over: Partial<UpgradeNode> = {}): UpgradeNode => ({
  name,
  skip: false,
  unschedulable: false,
  cordonedByUpgrade: false,
  currentPool: "p",
  desiredPool: "p",
  currentPoolLive: true,
  driver: ready(false),
  driverPods: 1,
  ...over,
});
const gpuPod = (name: string, over: Partial<NodePod> = {}): NodePod => ({
  namespace: "jobs",
  name,
  labels: {},
  usesGpu: true,
  daemonSet: false,
  controlled: true,
  emptyDir: false,
  finished: false,
  terminating: false,
  driver: false,
  ...over,
});
const states = (actions: UpgradeAction[]) => actions.filter((a) => a.kind === "setState").map((a) => `${a.node}:${(a as { state: string }).state}`);

test("upgradeSettings applies NVIDIA's defaults and resolves maxUnavailable", () => {
  const s = upgradeSettings(undefined, 10);
  assert.equal(s.autoUpgrade, true);
  assert.equal(s.maxParallelUpgrades, 1);
  assert.equal(s.maxUnavailable, 3);
  assert.equal(s.podDeletion.timeoutSeconds, 300);
  assert.equal(s.drain.enable, false);
  assert.equal(s.waitForCompletion.timeoutSeconds, 0);
  assert.equal(s.waitForCompletion.podSelector, undefined);
  const t = upgradeSettings({ autoUpgrade: false, maxParallelUpgrades: 0, maxUnavailable: 2, waitForCompletion: { podSelector: " app=train ", timeoutSeconds: 7 } }, 10);
  assert.deepEqual([t.autoUpgrade, t.maxParallelUpgrades, t.maxUnavailable, t.waitForCompletion.podSelector, t.waitForCompletion.timeoutSeconds], [false, 0, 2, "app=train", 7]);
});

test("one node starts with maxParallelUpgrades 1, cordoned and past the steps with nothing to do, in one write and one Event; the others are marked upgrade-required", () => {
  const plan = planUpgrades(["a", "b", "c"].map((n) => node(n)), settings({ maxUnavailable: 3 }), 0);
  // No waitForCompletion selector: a goes on to pod deletion, which waits for the pods listed after the cordon.
  assert.deepEqual(states(plan.actions), ["a:pod-deletion-required", "b:upgrade-required", "c:upgrade-required"]);
  assert.deepEqual(plan.actions.filter((a) => a.node === "a" && a.kind !== "event"), [{ kind: "cordon", node: "a" }, { kind: "setState", node: "a", state: "pod-deletion-required" }]);
  const events = plan.actions.filter((a) => a.kind === "event");
  assert.deepEqual(events.map((e) => [e.node, (e as { reason: string }).reason]), [["a", "DriverUpgradeStarted"]], "one Event, for the node that started; none for marking");
  assert.equal((events[0] as { message: string }).message, "driver pod is outdated; upgrade started; node cordoned");
  assert.deepEqual(plan.waiting, ["b", "c"]);
  assert.deepEqual(plan.counts, { "pod-deletion-required": 1, "upgrade-required": 2 });
  // Marked once: a node already labelled upgrade-required is not written again while it waits.
  assert.deepEqual(states(planUpgrades([node("a", { state: "pod-deletion-required" }), node("b", { state: "upgrade-required" })], settings({ maxUnavailable: 3 }), 0).actions), []);
});

test("a start with a waitForCompletion selector stops at wait-for-jobs-required: pods listed before the cordon are not used", () => {
  const s = settings({ waitForCompletion: { podSelector: "app=train", timeoutSeconds: 0 } });
  assert.deepEqual(states(planUpgrades([node("a", { pods: [] })], s, 0).actions), ["a:wait-for-jobs-required"]);
  // Resumed in cordon-required on a node not yet cordoned: cordoned now, and the pods wait for the next list.
  const resumed = planUpgrades([node("a", { state: "cordon-required", pods: [] })], settings(), 0);
  assert.deepEqual(resumed.actions.filter((a) => a.kind !== "event"), [{ kind: "cordon", node: "a" }, { kind: "setState", node: "a", state: "pod-deletion-required" }]);
  // Cordoned before the pods were listed: the list is good, and the node goes on to the restart.
  const cordoned = planUpgrades([node("a", { state: "cordon-required", unschedulable: true, cordonedByUpgrade: true, pods: [] })], settings(), 0);
  assert.deepEqual(states(cordoned.actions), ["a:pod-restart-required"]);
});

test("pods are listed only for a step that needs them", () => {
  const s = settings();
  const withSelector = settings({ waitForCompletion: { podSelector: "app=train", timeoutSeconds: 0 } });
  const need = (state: string, x = s, skip = false) => needsPods({ state, skip }, x);
  assert.deepEqual(["cordon-required", "wait-for-jobs-required", "pod-deletion-required", "drain-required", "pod-restart-required", "validation-required", "upgrade-required", "upgrade-done"].map((st) => need(st)), [false, false, true, true, false, false, false, false]);
  assert.equal(need("wait-for-jobs-required", withSelector), true);
  assert.equal(need("pod-deletion-required", s, true), false);
});

test("maxParallelUpgrades 0 is limited by maxUnavailable only", () => {
  const plan = planUpgrades(["a", "b", "c", "d"].map((n) => node(n, { state: "upgrade-required" })), settings({ maxParallelUpgrades: 0, maxUnavailable: 3 }), 0);
  assert.deepEqual(states(plan.actions), ["a:pod-deletion-required", "b:pod-deletion-required", "c:pod-deletion-required"]);
  assert.deepEqual(plan.waiting, ["d"]);
});

test("a node without a Ready driver counts against maxUnavailable", () => {
  const plan = planUpgrades([node("a", { state: "upgrade-required" }), node("b", { driver: undefined })], settings({ maxUnavailable: 1, maxParallelUpgrades: 0 }), 0);
  assert.deepEqual(states(plan.actions), []);
  assert.deepEqual(plan.waiting, ["a"]);
});

test("cordon keeps a record only for nodes the upgrade cordoned; an already cordoned node stays cordoned", () => {
  const plan = planUpgrades([node("a", { state: "cordon-required" }), node("b", { state: "cordon-required", unschedulable: true })], settings({ maxParallelUpgrades: 0 }), 0);
  assert.deepEqual(plan.actions.filter((a) => a.kind === "cordon").map((a) => a.node), ["a"]);
  const done = planUpgrades([node("a", { state: "uncordon-required", unschedulable: true, cordonedByUpgrade: true, driver: ready() }), node("b", { state: "uncordon-required", unschedulable: true, driver: ready() })], settings(), 0);
  assert.deepEqual(done.actions.filter((a) => a.kind === "uncordon").map((a) => a.node), ["a"]);
  assert.deepEqual(states(done.actions), ["a:upgrade-done", "b:upgrade-done"]);
  assert.deepEqual(done.actions.filter((a) => a.kind === "event").map((e) => (e as { message: string }).message), ["node uncordoned; upgrade done", "upgrade done; node left cordoned as it was before"]);
});

test("wait-for-jobs waits for matching pods, forever with timeout 0, and goes on after a timeout", () => {
  const pods = [gpuPod("train", { labels: { app: "train" } })];
  const s = settings({ waitForCompletion: { podSelector: "app=train", timeoutSeconds: 0 } });
  const waiting = planUpgrades([node("a", { state: "wait-for-jobs-required", stateSince: 0, pods })], s, 10_000_000);
  assert.deepEqual(states(waiting.actions), []);
  // The job finished and no GPU pod is left: on through pod deletion to the restart, in one write.
  const finished = planUpgrades([node("a", { state: "wait-for-jobs-required", pods: [{ ...pods[0]!, finished: true }] })], s, 0);
  assert.deepEqual(states(finished.actions), ["a:pod-restart-required"]);
  // After the timeout the job's pod (a GPU pod) is evicted in the same pass; the node waits in pod deletion.
  const timedOut = planUpgrades([node("a", { state: "wait-for-jobs-required", stateSince: 0, pods })], settings({ waitForCompletion: { podSelector: "app=train", timeoutSeconds: 5 } }), 6000);
  assert.deepEqual(states(timedOut.actions), ["a:pod-deletion-required"]);
  assert.deepEqual(timedOut.actions.filter((a) => a.kind === "evict").map((a) => (a as { pod: string }).pod), ["train"]);
  const event = timedOut.actions.find((a) => a.kind === "event") as { type: string; reason: string; message: string };
  assert.deepEqual([event.type, event.reason], ["Warning", "DriverUpgradeJobsDone"]);
  assert.match(event.message, /jobs still running after 5s: jobs\/train/);
});

test("pod deletion evicts GPU pods only, then fails at its timeout naming the pods left", () => {
  const pods = [gpuPod("gpu"), gpuPod("cpu", { usesGpu: false }), gpuPod("ds", { daemonSet: true })];
  const s = settings({ podDeletion: { force: false, timeoutSeconds: 30, deleteEmptyDir: false } });
  const first = planUpgrades([node("a", { state: "pod-deletion-required", stateSince: 0, pods })], s, 1000);
  assert.deepEqual(first.actions.filter((a) => a.kind === "evict").map((a) => (a as { pod: string }).pod), ["gpu"]);
  const late = planUpgrades([node("a", { state: "pod-deletion-required", stateSince: 0, pods })], s, 31_000);
  assert.deepEqual(states(late.actions), ["a:upgrade-failed"]);
  assert.match(late.failed[0]!.reason, /jobs\/gpu/);
  const clear = planUpgrades([node("a", { state: "pod-deletion-required", pods: pods.slice(1) })], s, 0);
  assert.deepEqual(states(clear.actions), ["a:pod-restart-required"]);
});

test("pods no controller owns or with emptyDir need force / deleteEmptyDir; drain takes over when enabled", () => {
  const pods = [gpuPod("bare", { controlled: false })];
  const no = planUpgrades([node("a", { state: "pod-deletion-required", pods })], settings(), 0);
  assert.deepEqual(states(no.actions), ["a:upgrade-failed"]);
  const forced = planUpgrades([node("a", { state: "pod-deletion-required", pods })], settings({ podDeletion: { force: true, timeoutSeconds: 300, deleteEmptyDir: false } }), 0);
  assert.equal(forced.actions.filter((a) => a.kind === "evict").length, 1);
  // Drain takes over (its own force setting), in the same pass, with a fresh timeout.
  const drain = settings({ drain: { enable: true, force: true, timeoutSeconds: 300, deleteEmptyDir: false } });
  const drained = planUpgrades([node("a", { state: "pod-deletion-required", stateSince: 0, pods })], drain, 10_000_000);
  assert.deepEqual(states(drained.actions), ["a:drain-required"]);
  assert.deepEqual(drained.actions.filter((a) => a.kind === "evict").map((a) => (a as { pod: string }).pod), ["bare"]);
  const noForce = planUpgrades([node("a", { state: "pod-deletion-required", pods })], settings({ drain: { enable: true, force: false, timeoutSeconds: 300, deleteEmptyDir: false } }), 0);
  assert.deepEqual(states(noForce.actions), ["a:upgrade-failed"]);
  assert.match(noForce.failed[0]!.reason, /^drain: pods no controller owns/);
  const empty = planUpgrades([node("a", { state: "pod-deletion-required", pods: [gpuPod("scratch", { emptyDir: true })] })], settings(), 0);
  assert.match(empty.failed[0]!.reason, /deleteEmptyDir/);
});

test("drain evicts pods matching its selector, leaving DaemonSet and driver pods alone", () => {
  const pods = [gpuPod("web", { usesGpu: false, labels: { tier: "web" } }), gpuPod("db", { usesGpu: false, labels: { tier: "db" } }), gpuPod("ds", { daemonSet: true }), gpuPod("drv", { driver: true })];
  const s = settings({ drain: { enable: true, force: false, timeoutSeconds: 300, deleteEmptyDir: false, podSelector: "tier=web" } });
  const plan = planUpgrades([node("a", { state: "drain-required", pods })], s, 0);
  assert.deepEqual(plan.actions.filter((a) => a.kind === "evict").map((a) => (a as { pod: string }).pod), ["web"]);
});

test("a pool move is written with the step into pod-restart-required, in the same patch, after the evictions", () => {
  const move = planUpgrades([node("a", { state: "pod-deletion-required", desiredPool: "q", driver: ready(), pods: [] })], settings(), 0);
  assert.deepEqual(move.actions.filter((a) => a.kind !== "event"), [{ kind: "movePool", node: "a", pool: "q" }, { kind: "setState", node: "a", state: "pod-restart-required" }]);
  const drained = planUpgrades([node("a", { state: "drain-required", desiredPool: "q", driver: ready(), pods: [] })], settings({ drain: { enable: true, force: false, timeoutSeconds: 300, deleteEmptyDir: false } }), 0);
  assert.deepEqual(drained.actions.filter((a) => a.kind !== "event"), [{ kind: "movePool", node: "a", pool: "q" }, { kind: "setState", node: "a", state: "pod-restart-required" }]);
  // With drain enabled and a pod to drain, pod deletion goes on to the drain, not yet to the restart: the pool stays.
  const toDrain = planUpgrades([node("a", { state: "pod-deletion-required", desiredPool: "q", driver: ready(), pods: [gpuPod("web", { usesGpu: false })] })], settings({ drain: { enable: true, force: false, timeoutSeconds: 300, deleteEmptyDir: false } }), 0);
  assert.deepEqual(toDrain.actions.filter((a) => a.kind !== "event"), [{ kind: "evict", node: "a", namespace: "jobs", pod: "web", why: "drain" }, { kind: "setState", node: "a", state: "drain-required" }]);
});

test("restart waits until no driver pod of any pool is left on the node, deleting none itself, then fails at its timeout", () => {
  // The DaemonSet controller removes the pods (their affinity excludes this state); the planner only waits.
  const waiting = planUpgrades([node("a", { state: "pod-restart-required", driverPods: 2, driver: undefined, currentPool: "q", desiredPool: "q" })], settings(), 0);
  assert.deepEqual(waiting.actions, []);
  const inPlace = planUpgrades([node("a", { state: "pod-restart-required", driverPods: 1 })], settings(), 0);
  assert.deepEqual(inPlace.actions, []);
  const gone = planUpgrades([node("a", { state: "pod-restart-required", driverPods: 0, driver: undefined })], settings(), 0);
  assert.deepEqual(states(gone.actions), ["a:validation-required"]);
  const late = planUpgrades([node("a", { state: "pod-restart-required", stateSince: 0, driverPods: 1 })], settings(), 601_000);
  assert.deepEqual(states(late.actions), ["a:upgrade-failed"]);
  assert.match(late.failed[0]!.reason, /old driver pod/);
  // The policy moved the node again meanwhile: the label follows at once, as nothing can start here.
  const again = planUpgrades([node("a", { state: "pod-restart-required", driverPods: 1, currentPool: "q", desiredPool: "r", driver: undefined })], settings(), 0);
  assert.deepEqual(again.actions, [{ kind: "movePool", node: "a", pool: "r" }]);
  // Never past the restart in the pass that enters it, even when no driver pod was seen: that
  // observation is from before the label, and a pod may have been made since.
  const entered = planUpgrades([node("a", { state: "pod-deletion-required", pods: [], driverPods: 0, driver: undefined, desiredPool: "q" })], settings(), 0);
  assert.deepEqual(entered.actions.filter((a) => a.kind !== "event"), [{ kind: "movePool", node: "a", pool: "q" }, { kind: "setState", node: "a", state: "pod-restart-required" }]);
  // A skipped node does not stay without a driver.
  assert.deepEqual(states(planUpgrades([node("a", { state: "pod-restart-required", driverPods: 0, skip: true, driver: undefined })], settings(), 0).actions), ["a:validation-required"]);
});

test("validation goes back to the restart step when the driver changed again, never moving the label while a pod runs", () => {
  const moved = planUpgrades([node("a", { state: "validation-required", currentPool: "q", desiredPool: "r", driver: ready() })], settings(), 0);
  assert.deepEqual(moved.actions.filter((a) => a.kind !== "event"), [{ kind: "movePool", node: "a", pool: "r" }, { kind: "setState", node: "a", state: "pod-restart-required" }]);
  const outdated = planUpgrades([node("a", { state: "validation-required", driver: ready(false) })], settings(), 0);
  assert.deepEqual(states(outdated.actions), ["a:pod-restart-required"]);
});

test("validation waits for a current Ready driver, and fails after its timeout", () => {
  assert.deepEqual(states(planUpgrades([node("a", { state: "validation-required", driver: undefined })], settings(), 0).actions), []);
  // Ready: validated, uncordoned and done in one write, with one Event.
  const done = planUpgrades([node("a", { state: "validation-required", driver: ready(), unschedulable: true, cordonedByUpgrade: true })], settings(), 0);
  assert.deepEqual(done.actions, [
    { kind: "uncordon", node: "a" },
    { kind: "setState", node: "a", state: "upgrade-done" },
    { kind: "event", node: "a", type: "Normal", reason: "DriverUpgradeDone", message: "new driver is Ready; node uncordoned; upgrade done" },
  ]);
  const late = planUpgrades([node("a", { state: "validation-required", stateSince: 0, driver: undefined })], settings(), 601_000);
  assert.deepEqual(states(late.actions), ["a:upgrade-failed"]);
});

test("with operands: the driver restarts only once the node's operand pods are gone (or after the step's timeout, with a Warning)", () => {
  const operand = (app: string, over: Partial<NodePod> = {}) => gpuPod(`${app}-x`, { namespace: "gpu-operator", usesGpu: false, daemonSet: true, operand: app, ...over });
  const plugin = operand("nvidia-device-plugin-daemonset");
  const stopping = operand("nvidia-container-toolkit-daemonset", { terminating: true });
  for (const pods of [[plugin], [stopping]]) {
    assert.deepEqual(states(planUpgrades([node("a", { state: "pod-deletion-required", stateSince: 0, pods: [], operandPods: pods })], settings(), 1000).actions), [], "waits while an operand pod is on the node (the operator's cache)");
  }
  assert.deepEqual(states(planUpgrades([node("a", { state: "pod-deletion-required", pods: [gpuPod("other-ds", { daemonSet: true, usesGpu: false })] })], settings(), 0).actions), ["a:pod-restart-required"], "other DaemonSets' pods do not hold the driver");
  const late = planUpgrades([node("a", { state: "pod-deletion-required", stateSince: 0, pods: [], operandPods: [plugin] })], settings(), 301_000);
  assert.deepEqual(states(late.actions), ["a:pod-restart-required"]);
  assert.match(late.actions.find((a) => a.kind === "event" && a.type === "Warning")?.kind === "event" ? (late.actions.find((a) => a.kind === "event") as { message: string }).message : "", /operand pods still on the node after 300s: gpu-operator\/nvidia-device-plugin-daemonset-x/);
  // With drain: GPU pods first, then the drain step waits for the operands.
  const drain = settings({ drain: { enable: true, force: false, timeoutSeconds: 300, deleteEmptyDir: false } });
  assert.deepEqual(states(planUpgrades([node("a", { state: "pod-deletion-required", pods: [], operandPods: [plugin] })], drain, 0).actions), ["a:drain-required"]);
  assert.deepEqual(states(planUpgrades([node("a", { state: "drain-required", stateSince: 0, pods: [], operandPods: [plugin] })], drain, 1000).actions), []);
  assert.deepEqual(states(planUpgrades([node("a", { state: "drain-required", pods: [] })], drain, 0).actions), ["a:pod-restart-required"]);
});

test("with operands: validation also waits for the node's operator validator pod, as NVIDIA's upgrade does", () => {
  const validator = (ready: boolean, terminating = false) => gpuPod("nvidia-operator-validator-x", { namespace: "gpu-operator", usesGpu: false, daemonSet: true, operand: "nvidia-operator-validator", ready, terminating });
  // From the operator's cache of operand pods (UpgradeNode.operandPods): validation lists no pods.
  const at = (pods: NodePod[] | undefined) => planUpgrades([node("a", { state: "validation-required", driver: ready(), validatorExpected: true, ...(pods ? { operandPods: pods } : {}) })], settings(), 0);
  assert.deepEqual(states(at(undefined).actions), []);
  assert.deepEqual(states(at([]).actions), []);
  assert.deepEqual(states(at([validator(false)]).actions), []);
  assert.deepEqual(states(at([validator(true, true)]).actions), [], "a validator pod on its way out is the old one");
  assert.deepEqual(states(at([validator(true)]).actions), ["a:upgrade-done"], "validated, then uncordoned in the same pass");
  assert.deepEqual(states(planUpgrades([node("a", { state: "validation-required", driver: { ...ready(), ready: false }, validatorExpected: true, operandPods: [validator(true)] })], settings(), 0).actions), [], "and for the new driver");
  assert.deepEqual(states(planUpgrades([node("a", { state: "validation-required", driver: ready(), validatorExpected: true, pods: [validator(true)] })], settings(), 0).actions), [], "a listed pod is not the cache's: validation reads the cache only");
  assert.equal(needsPods({ state: "validation-required", skip: false }, settings()), false, "validation lists no pods");
  const late = planUpgrades([node("a", { state: "validation-required", stateSince: 0, driver: ready(), validatorExpected: true, operandPods: [] })], settings(), 601_000);
  assert.deepEqual(states(late.actions), ["a:upgrade-failed"]);
});

test("autoUpgrade false replaces nothing and lists outdated nodes; pool moves still go the safe way", () => {
  const plan = planUpgrades([node("a"), node("b", { desiredPool: "q", driver: ready() })], settings({ autoUpgrade: false }), 0);
  assert.deepEqual(plan.outdated, ["a"]);
  assert.deepEqual(states(plan.actions), ["b:pod-deletion-required"]);
});

test("a node without a working driver (kernel changed, pool gone) moves pool at once", () => {
  const plan = planUpgrades([node("a", { desiredPool: "q", currentPoolLive: false, driver: ready() }), node("b", { desiredPool: "q", driver: undefined })], settings({ maxUnavailable: 1 }), 0);
  assert.deepEqual(plan.actions, [{ kind: "movePool", node: "a", pool: "q" }, { kind: "movePool", node: "b", pool: "q" }]);
});

test("a node leaving gpuop mid-upgrade loses its pool and state label and is uncordoned if the upgrade cordoned it", () => {
  const plan = planUpgrades([node("a", { desiredPool: undefined, state: "pod-deletion-required", unschedulable: true, cordonedByUpgrade: true })], settings(), 0);
  assert.deepEqual(plan.actions, [{ kind: "movePool", node: "a", pool: null }, { kind: "uncordon", node: "a" }, { kind: "clearState", node: "a" }]);
  assert.deepEqual(plan.counts, {});
});

test("skipped nodes are left alone; failed nodes stay failed until their driver is fine", () => {
  const plan = planUpgrades([node("a", { skip: true, state: "upgrade-required" }), node("b", { state: "upgrade-failed" })], settings(), 0);
  assert.deepEqual(plan.actions, []);
  assert.deepEqual(plan.outdated, ["a"]);
  assert.equal(plan.failed[0]?.node, "b");
  const fixed = planUpgrades([node("b", { state: "upgrade-failed", driver: ready() })], settings(), 0);
  assert.deepEqual(states(fixed.actions), ["b:upgrade-done"]);
});

test("up-to-date nodes with a Ready driver are labelled upgrade-done once, without an event", () => {
  const plan = planUpgrades([node("a", { driver: ready() }), node("b", { driver: ready(), state: "upgrade-done" })], settings(), 0);
  assert.deepEqual(plan.actions, [{ kind: "setState", node: "a", state: "upgrade-done" }]);
});

test("parseSelector understands kubectl's syntax and refuses what it does not", () => {
  const m = parseSelector("app=train, tier!=web,env in (a, b),!legacy,gpu");
  assert.equal(m({ app: "train", env: "a", gpu: "1" }), true);
  assert.equal(m({ app: "train", env: "c", gpu: "1" }), false);
  assert.equal(m({ app: "train", env: "a", gpu: "1", legacy: "x" }), false);
  assert.equal(m({ app: "train", env: "a" }), false);
  assert.equal(parseSelector("x notin (1)")({ x: "2" }), true);
  assert.throws(() => parseSelector("a=b=c"), /cannot parse label selector/);
});

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;

test("driverPodCurrent: pinning the digest a pod already runs does not make it outdated; a new digest does", () => {
  const tmpl = (image: string) => ({ metadata: { labels: { app: "x" } }, spec: { containers: [{ image }], nodeSelector: { a: "b" } } });
  const hash = driverTemplateHash(tmpl("r/driver:550"));
  assert.equal(driverTemplateHash(tmpl(`r/driver:550@${D1}`)), hash);
  assert.notEqual(driverTemplateHash(tmpl("r/driver:560")), hash);
  assert.equal(driverTemplateHash({ ...tmpl("r/driver:550"), spec: { ...tmpl("r/driver:550").spec, nodeSelector: { c: "d" } } }), hash);
  const pod = { annotations: { [TEMPLATE_HASH_ANNOTATION]: hash }, image: "r/driver:550", imageID: `docker-pullable://r/driver@${D1}` };
  assert.equal(driverPodCurrent(pod, { templateHash: hash, image: `r/driver:550@${D1}` }), true);
  assert.equal(driverPodCurrent(pod, { templateHash: hash, image: `r/driver:550@${D2}` }), false);
  assert.equal(driverPodCurrent({ ...pod, image: `r/driver:550@${D1}`, imageID: "" }, { templateHash: hash, image: `r/driver:550@${D2}` }), false);
  assert.equal(driverPodCurrent({ ...pod, image: `r/driver:550@${D1}` }, { templateHash: hash, image: "r/driver:550" }), true);
  assert.equal(driverPodCurrent(pod, { templateHash: "other", image: "r/driver:550" }), false);
  // A pod from before the hash: the template generation decides.
  assert.equal(driverPodCurrent({ labels: { "pod-template-generation": "3" } }, { generation: 3 }), true);
  assert.equal(driverPodCurrent({ labels: { "pod-template-generation": "2" } }, { generation: 3 }), false);
  assert.equal(digestOf(`${D1}`), D1);
  assert.equal(digestOf("r/driver:550"), undefined);
});

/**
 * A simulated cluster: each pass plans and applies the actions, then a DaemonSet controller acts
 * as the real one may at its worst: it marks every driver pod whose node no longer fits its pool
 * (pool label changed, or the node in pod-restart-required) terminating, and creates its pool's pod
 * on a fitting node that has none of that pool, whatever other pods the node has. A terminating pod
 * is gone `lag` passes later; a new pod is Ready `lag` passes later. Evictions succeed unless a pod
 * is protected (a PodDisruptionBudget). Time advances 10 s per pass. `maxPods` is, per node, the most
 * driver pods (terminating ones included) that existed at once. As the executor does, the planner
 * sees a node's workload pods only in a step that needs them (needsPods), listed after the node's
 * labels were read. Counted per node: node patches (passes with any label, annotation or cordon
 * change for it, which the executor writes as one patch), Events, pod lists, whether it was ever
 * marked upgrade-required (it waited for the budget), and evictions issued while it was not yet
 * seen cordoned.
 */
function simulate(start: UpgradeNode[], settingsAtStart: UpgradeSettings, opts: { lag: number; protectedPods?: Set<string>; passes?: number; settingsAt?: (pass: number) => UpgradeSettings; onPlan?: (nodes: UpgradeNode[], plan: UpgradePlan, now: number, s: UpgradeSettings) => void }) {
  let s = settingsAtStart;
  interface SimPod { pool: string; name: string; current: boolean; readyAt: number; goneAt?: number }
  const nodes = new Map(start.map((n) => [n.name, structuredClone(n)]));
  const workload = new Map(start.map((n) => [n.name, n.pods ?? []]));
  for (const n of nodes.values()) delete n.pods;
  const count = () => new Map(start.map((n) => [n.name, 0]));
  const patches = count();
  const events = count();
  const podLists = count();
  const waited = new Set<string>();
  const uncordonedEvictions: string[] = [];
  const pods = new Map(start.map((n) => [n.name, n.driver && n.currentPool ? [{ pool: n.currentPool, name: n.driver.name, current: n.driver.current, readyAt: n.driver.ready ? 0 : opts.lag }] : ([] as SimPod[])]));
  const maxPods = new Map<string, number>();
  let maxUnavailable = 0;
  let maxInProgress = 0;
  const transitions: string[] = [];
  let quiet = 0;
  for (let pass = 0; pass < (opts.passes ?? 400); pass++) {
    const now = pass * 10_000;
    s = opts.settingsAt?.(pass) ?? s;
    // What the operator's caches show: the node's pods, and its current pool's pod.
    for (const n of nodes.values()) {
      const list = (pods.get(n.name) ?? []).filter((p) => p.goneAt === undefined || p.goneAt > pass);
      pods.set(n.name, list);
      n.driverPods = list.length;
      const mine = list.filter((p) => p.pool === n.currentPool);
      const pod = mine.find((p) => p.goneAt === undefined) ?? mine[0];
      if (pod) n.driver = { namespace: "gpu-operator", name: pod.name, ready: pass >= pod.readyAt, current: pod.current, terminating: pod.goneAt !== undefined };
      else delete n.driver;
      if (needsPods(n, s)) {
        n.pods = workload.get(n.name)!;
        podLists.set(n.name, podLists.get(n.name)! + 1);
      } else delete n.pods;
    }
    const seenCordoned = new Set([...nodes.values()].filter((n) => n.unschedulable).map((n) => n.name));
    const plan = planUpgrades([...nodes.values()], s, now);
    opts.onPlan?.([...nodes.values()], plan, now, s);
    const patched = new Set(plan.actions.filter((a) => a.kind !== "evict" && a.kind !== "event").map((a) => a.node));
    for (const name of patched) patches.set(name, patches.get(name)! + 1);
    const evented = plan.actions.filter((a) => a.kind === "event").map((a) => a.node);
    assert.equal(new Set(evented).size, evented.length, `one Event per node per pass: ${evented.join(", ")}`);
    for (const name of evented) events.set(name, events.get(name)! + 1);
    for (const a of plan.actions) {
      const n = nodes.get(a.node)!;
      switch (a.kind) {
        case "setState":
          n.state = a.state;
          n.stateSince = now;
          transitions.push(`${a.node}:${a.state}`);
          if (a.state === "upgrade-required") waited.add(a.node);
          break;
        case "clearState":
          delete n.state;
          break;
        case "cordon":
          n.unschedulable = true;
          n.cordonedByUpgrade = true;
          break;
        case "uncordon":
          n.unschedulable = false;
          n.cordonedByUpgrade = false;
          break;
        case "evict":
          if (!seenCordoned.has(a.node)) uncordonedEvictions.push(`${a.node}/${a.pod}`);
          if (!opts.protectedPods?.has(a.pod)) workload.set(a.node, workload.get(a.node)!.filter((p) => p.name !== a.pod));
          break;
        case "movePool":
          n.currentPool = a.pool ?? undefined;
          break;
      }
    }
    // The DaemonSet controller, on what was just written.
    let changed = plan.actions.length > 0;
    for (const n of nodes.values()) {
      const list = pods.get(n.name)!;
      const fits = (pool: string) => n.currentPool === pool && n.state !== "pod-restart-required";
      for (const p of list) {
        if (p.goneAt === undefined && !fits(p.pool)) {
          p.goneAt = pass + opts.lag;
          changed = true;
        }
      }
      if (n.currentPool !== undefined && fits(n.currentPool) && !list.some((p) => p.pool === n.currentPool && p.goneAt === undefined)) {
        list.push({ pool: n.currentPool, name: `drv-${n.name}-${pass}`, current: true, readyAt: pass + opts.lag });
        changed = true;
      }
      maxPods.set(n.name, Math.max(maxPods.get(n.name) ?? 0, list.length));
      if (list.some((p) => p.goneAt !== undefined || p.readyAt > pass)) changed = true;
    }
    const after = [...nodes.values()];
    maxUnavailable = Math.max(maxUnavailable, after.filter((n) => n.desiredPool !== undefined && (IN_PROGRESS_STATES.has(n.state ?? "") || !(n.driver?.ready ?? false))).length);
    maxInProgress = Math.max(maxInProgress, after.filter((n) => IN_PROGRESS_STATES.has(n.state ?? "")).length);
    quiet = changed ? 0 : quiet + 1;
    if (quiet > 1) break;
  }
  return { nodes: [...nodes.values()], maxUnavailable, maxInProgress, transitions, maxPods, patches, events, podLists, waited, uncordonedEvictions };
}

test("simulated: a version bump reaches every node, never past either limit, and a PDB-protected node fails alone", () => {
  const start = ["a", "b", "c", "d", "e"].map((n) => node(n, { pods: [gpuPod(`job-${n}`)] }));
  const s = settings({ maxParallelUpgrades: 0, maxUnavailable: 2, podDeletion: { force: false, timeoutSeconds: 60, deleteEmptyDir: false } });
  const r = simulate(start, s, { lag: 3, protectedPods: new Set(["job-c"]) });
  const byName = Object.fromEntries(r.nodes.map((n) => [n.name, n]));
  for (const n of ["a", "b", "d", "e"]) {
    assert.equal(byName[n]!.state, "upgrade-done", n);
    assert.equal(byName[n]!.driver?.current, true);
    assert.equal(byName[n]!.unschedulable, false);
  }
  assert.equal(byName.c!.state, "upgrade-failed");
  assert.ok(r.maxUnavailable <= 2, `unavailable ${r.maxUnavailable}`);
  assert.deepEqual([...r.maxPods.values()], [1, 1, 1, 1, 1]);
});

test("simulated: a mode switch writes each moved node 4 times (5 if it waited for the budget), with two Events (started, done) and one pod list", () => {
  const start = ["a", "b", "c", "d", "e", "f"].map((n) => node(n, { driver: ready(), desiredPool: "q", pods: [] }));
  const r = simulate(start, settings({ maxParallelUpgrades: 0, maxUnavailable: 2 }), { lag: 2 });
  for (const n of r.nodes) assert.deepEqual([n.state, n.currentPool, n.unschedulable], ["upgrade-done", "q", false], n.name);
  const per = (m: Map<string, number>) => Object.fromEntries(m);
  assert.deepEqual(per(r.patches), { a: 4, b: 4, c: 5, d: 5, e: 5, f: 5 });
  assert.deepEqual(per(r.events), { a: 2, b: 2, c: 2, d: 2, e: 2, f: 2 });
  assert.deepEqual(per(r.podLists), { a: 1, b: 1, c: 1, d: 1, e: 1, f: 1 });
  assert.deepEqual(r.transitions.filter((t) => t.startsWith("a:")), ["a:pod-deletion-required", "a:pod-restart-required", "a:validation-required", "a:upgrade-done"]);
  assert.deepEqual(r.transitions.filter((t) => t.startsWith("f:")), ["f:upgrade-required", "f:pod-deletion-required", "f:pod-restart-required", "f:validation-required", "f:upgrade-done"]);
});

/** A simulated node from a property test's spec of it (the `i`th, named in order). */
function startNode(x: { outdated: boolean; move: boolean; cordoned: boolean; skip: boolean; job: boolean; failed?: boolean; noDriver?: boolean }, i: number): UpgradeNode {
  return node(`n${String(i).padStart(2, "0")}`, {
    driver: { ...ready(!x.outdated), ...(x.noDriver ? { ready: false } : {}) },
    desiredPool: x.move ? "q" : "p",
    unschedulable: x.cordoned,
    skip: x.skip,
    ...(x.failed ? { state: "upgrade-failed", failedReason: "earlier" } : {}),
    pods: x.job ? [gpuPod(`job${i}`)] : [],
  });
}

test("property: any start, any limits: limits hold, every node ends done or failed, cordons are restored", () => {
  const nodeArb = fc.record({
    outdated: fc.boolean(),
    move: fc.boolean(),
    cordoned: fc.boolean(),
    skip: fc.boolean(),
    protectedJob: fc.boolean(),
    job: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(nodeArb, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 4 }), (specs, maxParallel, maxUnavailable, lag) => {
      const start = specs.map(startNode);
      const protectedPods = new Set(specs.flatMap((x, i) => (x.protectedJob && x.job ? [`job${i}`] : [])));
      const s = settings({ maxParallelUpgrades: maxParallel, maxUnavailable, podDeletion: { force: false, timeoutSeconds: 30, deleteEmptyDir: false } });
      const r = simulate(start, s, { lag, protectedPods, passes: 2000 });
      assert.ok(r.maxUnavailable <= maxUnavailable, `unavailable ${r.maxUnavailable} > ${maxUnavailable}`);
      // Never a new pool's (or a replacement) pod while an old driver pod, even a terminating one, is on the node.
      for (const [name, max] of r.maxPods) assert.ok(max <= 1, `${name} had ${max} driver pods at once`);
      if (maxParallel > 0) assert.ok(r.maxInProgress <= maxParallel);
      assert.deepEqual(r.uncordonedEvictions, [], "no pod evicted from a node before its cordon was seen written");
      r.nodes.forEach((n, i) => {
        const x = specs[i]!;
        if (x.skip) {
          assert.equal(n.state, undefined);
          return;
        }
        // Writes per node: a node that changes driver is written at most 4 times (cordon and on to
        // pod deletion; the restart with its pool label, or upgrade-failed; validation; done and
        // uncordoned), plus once if it waited for the budget (upgrade-required); one that does
        // not, once (upgrade-done). At most one Event per write that moved it on, none for the mark.
        const writes = r.patches.get(n.name)!;
        const bound = x.outdated || x.move ? 4 + (r.waited.has(n.name) ? 1 : 0) : 1;
        assert.ok(writes <= bound, `${n.name}: ${writes} node writes > ${bound} ${JSON.stringify(x)}`);
        assert.ok(r.events.get(n.name)! <= 4, `${n.name}: ${r.events.get(n.name)} Events`);
        // Without workload pods, its pods are listed once (in pod deletion), and only if it changes driver.
        if (!x.job) assert.ok(r.podLists.get(n.name)! <= (x.outdated || x.move ? 1 : 0), `${n.name}: ${r.podLists.get(n.name)} pod lists`);
        const needed = x.outdated || x.move;
        if (needed && x.protectedJob && x.job) assert.equal(n.state, "upgrade-failed");
        else {
          assert.equal(n.state, "upgrade-done", `${n.name} ${JSON.stringify(x)}`);
          assert.equal(n.currentPool, n.desiredPool);
          assert.equal(n.driver?.current, true);
          // A node cordoned before stays cordoned; one the upgrade cordoned is uncordoned.
          assert.equal(n.unschedulable, x.cordoned);
        }
      });
    }),
    { numRuns: 200 },
  );
});

test("property: the incremental planner gives planUpgrades' plan over every node, pass after pass, while planning fewer nodes", () => {
  const nodeArb = fc.record({ outdated: fc.boolean(), move: fc.boolean(), cordoned: fc.boolean(), skip: fc.boolean(), job: fc.boolean(), protectedJob: fc.boolean(), failed: fc.boolean(), noDriver: fc.boolean() });
  let plannedSum = 0;
  let nodesSum = 0;
  fc.assert(
    fc.property(
      fc.array(nodeArb, { minLength: 1, maxLength: 14 }),
      fc.integer({ min: 0, max: 4 }),
      fc.integer({ min: 1, max: 5 }),
      // Up to 80 s for a driver pod to come and go: past the 60 s step timeout, so steps time out too.
      fc.integer({ min: 1, max: 8 }),
      fc.boolean(),
      fc.integer({ min: 1, max: 40 }),
      (specs, maxParallel, maxUnavailable, lag, autoUpgrade, settingsChangeAt) => {
        const start = specs.map(startNode);
        const base = settings({ autoUpgrade, maxParallelUpgrades: maxParallel, maxUnavailable, podDeletion: { force: false, timeoutSeconds: 30, deleteEmptyDir: false }, validationTimeoutSeconds: 60 });
        const changed = { ...base, autoUpgrade: !autoUpgrade, maxUnavailable: maxUnavailable + 1 };
        const planner = new IncrementalUpgradePlanner();
        // The same plan told only what changed (planChanges), as the executor tells it.
        const told = new IncrementalUpgradePlanner();
        let last = new Map<string, UpgradeNode>();
        // Views as the executor keeps them: the same object while a node's view is unchanged.
        const kept = new Map<string, { json: string; view: UpgradeNode }>();
        let pass = 0;
        const sorted = (p: UpgradePlan) => ({
          actions: p.actions.map((a) => JSON.stringify(a)).sort(),
          waiting: p.waiting,
          outdated: [...p.outdated].sort(),
          failed: [...p.failed].sort((a, b) => (a.node < b.node ? -1 : 1)),
          counts: p.counts,
          unavailable: p.unavailable,
        });
        simulate(start, base, {
          lag,
          passes: 300,
          protectedPods: new Set(specs.flatMap((x, i) => (x.protectedJob && x.job ? [`job${i}`] : []))),
          // A policy edit partway: the settings change, and everything is planned again.
          settingsAt: (p) => (p >= settingsChangeAt ? changed : base),
          onPlan: (nodes, full, now, s) => {
            pass++;
            const views = nodes.map((n) => {
              const json = JSON.stringify(n);
              const k = kept.get(n.name);
              if (k && k.json === json) return k.view;
              const view = structuredClone(n);
              kept.set(n.name, { json, view });
              return view;
            });
            const want = full;
            const got = planner.plan(views, s, now);
            assert.deepEqual(sorted(got), sorted(want), `pass ${pass}`);
            const now2 = new Map(views.map((v) => [v.name, v]));
            const changes = views.filter((v) => last.get(v.name) !== v);
            const removed = [...last.keys()].filter((name) => !now2.has(name));
            last = now2;
            assert.deepEqual(sorted(told.planChanges(changes, removed, s, now)), sorted(want), `pass ${pass}, told the changes`);
            plannedSum += planner.lastPlanned;
            nodesSum += views.length;
          },
        });
      },
    ),
    { numRuns: 150 },
  );
  assert.ok(plannedSum < nodesSum / 2, `planned ${plannedSum} of ${nodesSum} node-passes`);
});

test("a rendered DaemonSet pinned to a digest keeps its template hash, so pods already on those bits stay current", async () => {
  const { renderDriverDaemonSets, pinDriverDigest } = await import("./render.ts");
  const { gpuNodeObject } = await import("../../test/harness/nodes.ts");
  const n = gpuNodeObject({ name: "a", kernel: "5.15.0-69-generic", labels: { "nvidia.com/gpu.deploy.driver": "true" } });
  const [ds] = renderDriverDaemonSets({
    policy: { metadata: { name: "cluster-policy" }, spec: { driver: { repository: "r", version: "550.54.15" } } },
    nodes: [{ ...n, status: { ...n.status, conditions: [{ type: "Ready", status: "True" }] } }],
    namespace: "gpu-operator",
  }).daemonSets;
  const pinned = pinDriverDigest(ds!, D1);
  assert.equal(pinned.spec.template.spec.containers[0]!.image, `r/driver:550.54.15-ubuntu22.04@${D1}`);
  assert.equal(ds!.spec.template.spec.containers[0]!.image, "r/driver:550.54.15-ubuntu22.04", "input untouched");
  const hash = ds!.spec.template.metadata.annotations[TEMPLATE_HASH_ANNOTATION]!;
  assert.equal(pinned.spec.template.metadata.annotations[TEMPLATE_HASH_ANNOTATION], hash);
  assert.equal(driverTemplateHash(pinned.spec.template), hash);
  assert.equal(pinDriverDigest(pinned, D2).spec.template.spec.containers[0]!.image, pinned.spec.template.spec.containers[0]!.image, "an image with a digest is left alone");
  // The pod made before the pin, whose runtime pulled D1, is current; one that pulled other bits is not.
  const pod = { annotations: { [TEMPLATE_HASH_ANNOTATION]: hash }, image: "r/driver:550.54.15-ubuntu22.04" };
  const want = { templateHash: hash, image: pinned.spec.template.spec.containers[0]!.image };
  assert.equal(driverPodCurrent({ ...pod, imageID: `r/driver@${D1}` }, want), true);
  assert.equal(driverPodCurrent({ ...pod, imageID: `r/driver@${D2}` }, want), false);
});

test("normalizePolicy refuses an upgrade policy gpuop could not act on, naming the field", async () => {
  const { normalizePolicy } = await import("./policy.ts");
  const policy = (upgradePolicy: unknown) => ({ metadata: { name: "p" }, spec: { driver: { upgradePolicy } } });
  assert.throws(() => normalizePolicy(policy({ waitForCompletion: { podSelector: "app in training" } })), /spec\.driver\.upgradePolicy\.waitForCompletion\.podSelector .* is not a label selector/);
  assert.throws(() => normalizePolicy(policy({ drain: { podSelector: "a=b=c" } })), /upgradePolicy\.drain\.podSelector/);
  assert.throws(() => normalizePolicy(policy({ maxParallelUpgrades: -1 })), /maxParallelUpgrades must be a whole number/);
  assert.throws(() => normalizePolicy(policy({ podDeletion: { timeoutSeconds: "300" } })), /podDeletion\.timeoutSeconds/);
  assert.doesNotThrow(() => normalizePolicy(policy({ waitForCompletion: { podSelector: "app=training,tier notin (web)" }, drain: { podSelector: "" } })));
});

test("a failed node keeps its recorded reason in the plan; the status counts every state, zeros included", async () => {
  const plan = planUpgrades([node("b", { state: "upgrade-failed", failedReason: "PDB said no" }), node("c", { state: "upgrade-done", driver: ready() })], settings(), 0);
  assert.deepEqual(plan.failed, [{ node: "b", reason: "PDB said no" }]);
  const fails = planUpgrades([node("a", { state: "pod-deletion-required", stateSince: 0, pods: [gpuPod("g")] })], settings(), 301_000);
  assert.match((fails.actions.find((a) => a.kind === "setState") as { reason?: string }).reason ?? "", /jobs\/g/);
  const { computeStatus } = await import("./status.ts");
  const st = computeStatus({ namespace: "ns", policyErrors: [], nodeProblems: [], pools: [], daemonSets: new Map(), waiting: [], gpuNodes: 2, upgrades: { counts: plan.counts, pending: [], failed: plan.failed, outdated: [] } }, undefined, "2026-01-01T00:00:00Z");
  assert.equal(Object.keys(st.upgrades!.nodesByState).length, 10);
  assert.equal(st.upgrades!.nodesByState["cordon-required"], 0);
  assert.equal(st.upgrades!.nodesByState["upgrade-failed"], 1);
  assert.equal(st.conditions?.find((c) => c.type === "Ready")?.reason, "DriverUpgradeFailed");
  assert.match(st.conditions?.find((c) => c.type === "Ready")?.message ?? "", /PDB said no.*upgrade-required/);
});

test("upgradeSettings: every default, and every field taken from the policy when set (values other than the defaults)", () => {
  assert.deepEqual(upgradeSettings(undefined, 10), {
    autoUpgrade: true,
    maxParallelUpgrades: 1,
    maxUnavailable: 3,
    waitForCompletion: { timeoutSeconds: 0 },
    podDeletion: { force: false, timeoutSeconds: 300, deleteEmptyDir: false },
    drain: { enable: false, force: false, timeoutSeconds: 300, deleteEmptyDir: false },
    validationTimeoutSeconds: upgradeSettings({}, 1).validationTimeoutSeconds,
  });
  const s = upgradeSettings({
    maxParallelUpgrades: 2.7,
    maxUnavailable: "50%",
    podDeletion: { force: true, timeoutSeconds: 45, deleteEmptyDir: true },
    drain: { enable: true, force: true, podSelector: " tier=batch ", timeoutSeconds: 90, deleteEmptyDir: true },
    waitForCompletion: { podSelector: "   ", timeoutSeconds: 5 },
  }, 6);
  assert.deepEqual([s.maxParallelUpgrades, s.maxUnavailable], [2, 3]);
  assert.deepEqual(s.podDeletion, { force: true, timeoutSeconds: 45, deleteEmptyDir: true });
  assert.deepEqual(s.drain, { enable: true, force: true, podSelector: "tier=batch", timeoutSeconds: 90, deleteEmptyDir: true });
  assert.deepEqual(s.waitForCompletion, { timeoutSeconds: 5 }, "a blank selector is none");
  assert.equal(upgradeSettings({ maxParallelUpgrades: -2 }, 4).maxParallelUpgrades, 0);
  assert.equal(upgradeSettings({ maxUnavailable: "100%" }, 0).maxUnavailable, 1, "no GPU nodes yet: a budget of one, not zero");
});

// The Events a node's upgrade writes, state by state: what an admin reads in `kubectl describe node`.
const events = (actions: UpgradeAction[]) => actions.filter((a) => a.kind === "event").map((a) => { const e = a as { node: string; type: string; message: string }; return `${e.node} ${e.type}: ${e.message}`; });

test("each Event, word for word: the start, a warning, a failure, the driver changing again, the end; none for a step in between", () => {
  const s = settings();
  const one = (n: UpgradeNode, st = s, now = 0) => events(planUpgrades([n], st, now).actions);
  assert.deepEqual(one(node("a")), ["a Normal: driver pod is outdated; upgrade started; node cordoned"], "one Event for the start, naming every step taken");
  assert.deepEqual(one(node("a", { desiredPool: "q", driver: ready() })), ["a Normal: driver moves to pool q; upgrade started; node cordoned"]);
  // Steps in between: the state label says where the node is; nothing a user acts on happened.
  assert.deepEqual(one(node("a", { state: "cordon-required" })), []);
  assert.deepEqual(one(node("a", { state: "cordon-required", unschedulable: true })), []);
  const waitFor = settings({ waitForCompletion: { podSelector: "app=train", timeoutSeconds: 5 } });
  assert.deepEqual(one(node("a", { state: "wait-for-jobs-required", pods: [] }), waitFor), []);
  assert.deepEqual(one(node("a", { state: "wait-for-jobs-required", stateSince: 0, pods: [gpuPod("t1", { labels: { app: "train" } })] }), waitFor, 6000), ["a Warning: jobs still running after 5s: jobs/t1; going on with pod deletion"]);
  assert.deepEqual(one(node("a", { state: "wait-for-jobs-required", stateSince: 0, pods: [gpuPod("t1", { labels: { app: "train" } })] }), waitFor, 5000), [], "not past the timeout yet");
  assert.deepEqual(one(node("a", { state: "wait-for-jobs-required" }), waitFor), [], "pods not listed yet: wait");
  assert.deepEqual(one(node("a", { state: "pod-deletion-required", pods: [] })), []);
  assert.deepEqual(one(node("a", { state: "pod-deletion-required" })), [], "pods not listed yet: wait");
  const drain = settings({ drain: { enable: true, force: false, timeoutSeconds: 300, deleteEmptyDir: false } });
  assert.deepEqual(states(planUpgrades([node("a", { state: "pod-deletion-required", pods: [] })], drain, 0).actions), ["a:pod-restart-required"], "nothing to drain either: on to the restart with the same list");
  assert.deepEqual(one(node("a", { state: "drain-required", pods: [gpuPod("done", { finished: true }), gpuPod("ds", { daemonSet: true }), gpuPod("drv", { driver: true })] }), drain), []);
  assert.deepEqual(one(node("a", { state: "pod-deletion-required", pods: [], desiredPool: "q", driver: ready() })), []);
  assert.deepEqual(one(node("a", { state: "pod-restart-required" })), [], "the old driver pod is still there: wait");
  assert.deepEqual(one(node("a", { state: "pod-restart-required", driverPods: 0, driver: undefined })), []);
  assert.deepEqual(one(node("a", { state: "pod-restart-required", stateSince: 0 }), s, 601_000), ["a Warning: the old driver pod was still on the node after 600s"]);
  assert.deepEqual(one(node("a", { state: "validation-required", driver: ready() })), ["a Normal: new driver is Ready; upgrade done; node left cordoned as it was before"]);
  assert.deepEqual(one(node("a", { state: "validation-required", currentPool: "q", desiredPool: "r", driver: ready() })), ["a Normal: driver moves again, to pool r; driver moves to pool r"], "the driver changing again is news");
  assert.deepEqual(planUpgrades([node("a", { state: "validation-required", driver: ready(false) })], s, 0).actions.filter((a) => a.kind === "event").map((a) => (a as { reason: string }).reason), ["DriverUpgradeRestartedAgain"]);
  assert.deepEqual(one(node("a", { state: "uncordon-required", driver: ready(), cordonedByUpgrade: true })), ["a Normal: node uncordoned; upgrade done"]);
  assert.deepEqual(one(node("a", { state: "uncordon-required", driver: ready() })), ["a Normal: upgrade done; node left cordoned as it was before"]);
  assert.deepEqual(one(node("a", { state: "upgrade-failed", driver: ready() })), ["a Normal: the driver is Ready again; leaving upgrade-failed; upgrade done; node left cordoned as it was before"]);
  const failed = planUpgrades([node("a", { state: "upgrade-failed" })], s, 0);
  assert.deepEqual(failed.failed, [{ node: "a", reason: "see the node's Events" }]);
});

const OPERANDS_NOTE = "NVIDIA's operands on this node stop, and come back in order (toolkit, then device plugin, GFD, DCGM exporter, validator) once the new driver is Ready";
const GATES = ["gpuop.nvidia.com/gate.container-toolkit", "gpuop.nvidia.com/gate.operator-validator"];

test("the step that takes the driver away closes the node's open operand gates in its own patch, and its Event says the operands stop", () => {
  // The start: cordon, the gates closed and pod-deletion-required, one patch; one Event.
  const start = planUpgrades([node("a", { openGates: GATES })], settings(), 0);
  assert.deepEqual(start.actions, [
    { kind: "cordon", node: "a" },
    { kind: "closeGates", node: "a", gates: GATES },
    { kind: "setState", node: "a", state: "pod-deletion-required" },
    { kind: "event", node: "a", type: "Normal", reason: "DriverUpgradeStarted", message: `driver pod is outdated; upgrade started; node cordoned; ${OPERANDS_NOTE}` },
  ]);
  // No gate open (operands off, or closed already): nothing more to write or say.
  assert.deepEqual(planUpgrades([node("a", { openGates: [] })], settings(), 0).actions.map((a) => a.kind), ["cordon", "setState", "event"]);
  // Waiting for jobs keeps the driver, and the operands with it.
  const waitFor = settings({ waitForCompletion: { podSelector: "app=train", timeoutSeconds: 0 } });
  assert.deepEqual(planUpgrades([node("a", { openGates: GATES })], waitFor, 0).actions.filter((a) => a.kind === "closeGates"), []);
  const jobs = planUpgrades([node("a", { state: "wait-for-jobs-required", stateSince: 0, openGates: GATES, pods: [gpuPod("t1", { labels: { app: "train" } })] })], waitFor, 0);
  assert.deepEqual(jobs.actions, [], "jobs running: the operands keep running too");
  // The jobs done: on to pod deletion, the gates closed there, with an Event that says so.
  const running = [gpuPod("v", { namespace: "gpu-operator", operand: "nvidia-operator-validator", daemonSet: true, usesGpu: false })];
  const done = planUpgrades([node("a", { state: "wait-for-jobs-required", openGates: GATES, pods: [], operandPods: running })], waitFor, 0);
  assert.deepEqual(done.actions, [
    { kind: "closeGates", node: "a", gates: GATES },
    { kind: "setState", node: "a", state: "pod-deletion-required" },
    { kind: "event", node: "a", type: "Normal", reason: "OperandsStopped", message: `no matching jobs running; ${OPERANDS_NOTE}` },
  ]);
  // Gates opened again during validation, the driver changed again: closed with the restart.
  const again = planUpgrades([node("a", { state: "validation-required", driver: ready(false), openGates: GATES })], settings(), 0);
  assert.deepEqual(again.actions.filter((a) => a.kind !== "event"), [{ kind: "closeGates", node: "a", gates: GATES }, { kind: "setState", node: "a", state: "pod-restart-required" }]);
  // Validated: the gates stay open, and the node is done.
  assert.deepEqual(planUpgrades([node("a", { state: "validation-required", driver: ready(), openGates: GATES })], settings(), 0).actions.filter((a) => a.kind === "closeGates"), []);
  // A step that fails closes nothing (the node keeps its driver and operands).
  const fails = planUpgrades([node("a", { state: "pod-deletion-required", stateSince: 0, openGates: GATES, pods: [gpuPod("p", { controlled: false })] })], settings(), 0);
  assert.deepEqual(fails.actions.filter((a) => a.kind === "closeGates"), []);
  assert.deepEqual(states(fails.actions), ["a:upgrade-failed"]);
  // A node already in a stop state with its gates closed writes nothing more for them.
  assert.deepEqual(planUpgrades([node("a", { state: "pod-deletion-required", pods: [], operandPods: [gpuPod("v", { operand: "nvidia-operator-validator", daemonSet: true, usesGpu: false })], openGates: [] })], settings(), 0).actions, []);
});

test("in the restart step a terminating driver pod still counts; a node leaving gpuop without a pool or state needs nothing", () => {
  const terminating = { ...ready(false), terminating: true };
  const plan = planUpgrades([node("a", { state: "pod-restart-required", driver: terminating, driverPods: 1 })], settings(), 0);
  assert.deepEqual(states(plan.actions), [], "the new pod may start only once the old one is gone");
  assert.deepEqual(states(planUpgrades([node("a", { state: "pod-restart-required", driver: undefined, driverPods: 0 })], settings(), 0).actions), ["a:validation-required"]);
  assert.deepEqual(planUpgrades([node("a", { desiredPool: undefined, currentPool: undefined })], settings(), 0).actions, []);
  assert.deepEqual(planUpgrades([node("b"), node("a")], settings(), 0).waiting, ["b"], "nodes start in name order");
});

test("podsNeededAgain: an eviction step whose list found nothing to evict is not listed again while its operands go, within the timeout; a fresh list otherwise", () => {
  const s = settings();
  const operand = gpuPod("v", { namespace: "gpu-operator", usesGpu: false, daemonSet: true, operand: "nvidia-operator-validator" });
  const at = (over: Partial<UpgradeNode>) => node("a", { state: "pod-deletion-required", stateSince: 1000, operandPods: [operand], ...over });
  assert.equal(podsNeededAgain(at({}), s, 2000, 1000), false, "nothing to evict last time, the operands still going: the list stands");
  assert.equal(podsNeededAgain(at({}), s, 2000, undefined), true, "no list yet in this step");
  assert.equal(podsNeededAgain(at({}), s, 2000, 500), true, "the list was of an earlier stay in the step");
  assert.equal(podsNeededAgain(at({ operandPods: [] }), s, 2000, 1000), true, "the operands are gone: the restart is planned from a fresh list");
  assert.equal(podsNeededAgain(at({ operandPods: [{ ...operand, finished: true }] }), s, 2000, 1000), true, "a finished operand pod does not hold the driver");
  assert.equal(podsNeededAgain(at({}), s, 1000 + 300_000, 1000), false, "at the timeout the restart does not go on yet");
  assert.equal(podsNeededAgain(at({}), s, 1000 + 300_001, 1000), true, "past it the restart goes on without the operands: from a fresh list");
  assert.equal(podsNeededAgain(at({}), settings({ podDeletion: { force: false, timeoutSeconds: 0, deleteEmptyDir: false } }), 10_000_000, 1000), false, "timeout 0: the operands are waited for forever");
  const drain = settings({ drain: { enable: true, force: false, timeoutSeconds: 60, deleteEmptyDir: false } });
  assert.equal(podsNeededAgain(at({}), drain, 2000, 1000), true, "pod deletion goes on to the drain, which evicts more: listed");
  assert.equal(podsNeededAgain(at({ state: "drain-required" }), drain, 2000, 1000), false);
  assert.equal(podsNeededAgain(at({ state: "drain-required" }), drain, 1000 + 61_000, 1000), true, "the drain's own timeout");
  assert.equal(podsNeededAgain(at({ state: "validation-required" }), s, 2000, 1000), false, "validation lists nothing");
  assert.equal(podsNeededAgain(at({ state: "wait-for-jobs-required" }), settings({ waitForCompletion: { podSelector: "app=train", timeoutSeconds: 0 } }), 2000, 1000), true, "jobs are listed each pass");
  assert.equal(podsNeededAgain(at({ skip: true }), s, 2000, undefined), false);
  // What counts as "nothing to evict".
  const pods = [gpuPod("gpu"), gpuPod("web", { usesGpu: false }), gpuPod("done", { finished: true }), gpuPod("ds", { daemonSet: true }), gpuPod("drv", { driver: true }), operand];
  assert.deepEqual(podsToEvict("pod-deletion-required", pods, s).map((p) => p.name), ["gpu"]);
  assert.deepEqual(podsToEvict("drain-required", pods, drain).map((p) => p.name), ["gpu", "web"]);
  assert.deepEqual(podsToEvict("drain-required", pods, settings({ drain: { enable: true, force: false, podSelector: "app=x", timeoutSeconds: 60, deleteEmptyDir: false } })).map((p) => p.name), []);
  assert.deepEqual(podsToEvict("validation-required", pods, s), []);
});

test("simulated with the operands: the restart waits for them, and a node is listed twice however long they take (after the cordon; for the restart)", () => {
  // The operand pods of each node go 3 passes after its gates close (the start's patch).
  const start = ["a", "b"].map((n) => node(n, { driver: ready(), desiredPool: "q", pods: [], openGates: ["gpuop.nvidia.com/gate.operator-validator"] }));
  const s = settings({ maxParallelUpgrades: 0, maxUnavailable: 2 });
  const nodes = new Map(start.map((n) => [n.name, structuredClone(n)]));
  const goneAt = new Map<string, number>();
  const clear = new Map<string, number>();
  const lists = new Map<string, number>();
  let restarted = 0;
  for (let pass = 0; pass < 12; pass++) {
    const now = pass * 2000;
    for (const n of nodes.values()) {
      n.operandPods = goneAt.has(n.name) && pass >= goneAt.get(n.name)! ? [] : [gpuPod("v", { namespace: "gpu-operator", usesGpu: false, daemonSet: true, operand: "nvidia-operator-validator" })];
      delete n.pods;
      if (needsPods(n, s)) {
        if (podsNeededAgain(n, s, now, clear.get(n.name))) {
          n.pods = [];
          lists.set(n.name, (lists.get(n.name) ?? 0) + 1);
          clear.set(n.name, n.stateSince!);
        } else n.pods = [];
      }
    }
    const plan = planUpgrades([...nodes.values()], s, now);
    for (const a of plan.actions) {
      const n = nodes.get(a.node)!;
      if (a.kind === "closeGates") {
        goneAt.set(a.node, pass + 3);
        n.openGates = [];
      }
      if (a.kind === "setState") {
        if (a.state === "pod-restart-required") {
          assert.ok(pass >= goneAt.get(a.node)!, `${a.node}: restarted at pass ${pass}, its operands go at ${goneAt.get(a.node)}`);
          restarted++;
        }
        n.state = a.state;
        n.stateSince = now;
      }
      if (a.kind === "cordon") n.unschedulable = true;
    }
  }
  assert.equal(restarted, 2);
  assert.deepEqual(Object.fromEntries(lists), { a: 2, b: 2 }, "the first list after the cordon, and the fresh one the restart is planned from");
});

test("recheckAfterMs: a timer while a node waits on what no watch reports; else the first watched step's timeout; nothing when no node is in a step", () => {
  const now = 1_000_000;
  // Only watched steps: wake when the first of them times out (validation's 600 s from when it began).
  assert.equal(recheckAfterMs([{ state: "validation-required", stateSince: now - 100_000 }, { state: "pod-restart-required", stateSince: now - 300_000 }, { state: "upgrade-done" }], 600, now, 2000), 301_000);
  // One node evicting (workload pods are not watched): the timer.
  assert.equal(recheckAfterMs([{ state: "validation-required", stateSince: now }, { state: "pod-deletion-required", stateSince: now }], 600, now, 2000), 2000);
  for (const state of ["cordon-required", "wait-for-jobs-required", "drain-required", "uncordon-required"]) assert.equal(recheckAfterMs([{ state, stateSince: now }], 600, now, 2000), 2000, state);
  // A watched step without a start time, or one past its timeout: the timer, never sooner.
  assert.equal(recheckAfterMs([{ state: "validation-required" }], 600, now, 2000), 2000);
  assert.equal(recheckAfterMs([{ state: "validation-required", stateSince: now - 700_000 }], 600, now, 2000), 2000);
  // No node in a step (done, waiting for the budget, failed): nothing to recheck.
  assert.equal(recheckAfterMs([{ state: "upgrade-done" }, { state: "upgrade-required" }, { state: "upgrade-failed", stateSince: now }], 600, now, 2000), undefined);
});
