// The upgrade executor keeps each node's view between passes (UpgradeExecutor.observed). Every
// memoized view must equal one worked out afresh, whatever changed: the node, its driver pod,
// its operand pods, its pool's DaemonSet or the pools the policy wants.
import { test } from "node:test";
import assert from "node:assert/strict";
import { UpgradeExecutor, type UpgradeInputs } from "./upgrade-controller.ts";
import { PodsByNode } from "../kube/pods-by-node.ts";
import { silentLogger } from "../kube/log.ts";
import type { KubeClient } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { DaemonSet, Node, Pod } from "../kube/types.ts";
import { POOL_NODE_LABEL } from "../core/rollout.ts";
import { TEMPLATE_HASH_ANNOTATION, UPGRADE_STATE_LABEL, upgradeSettings, type UpgradeNode } from "../core/upgrade.ts";
import { DRIVER_CONTAINER } from "../core/render.ts";
import { OPERANDS_DRIVER_ANNOTATION } from "../core/operands/index.ts";

// Views are built from the caches alone for nodes in no eviction step: any request fails the test.
const noRequests = new Proxy({}, { get: (_t, p) => () => { throw new Error(`unexpected request: ${String(p)}`); } }) as unknown as KubeClient;
const executor = () => new UpgradeExecutor({ client: noRequests, events: noRequests as unknown as EventRecorder, log: silentLogger, namespace: "gpu-operator" });

const node = (name: string, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): Node => ({
  metadata: { name, resourceVersion: "1", labels: { [POOL_NODE_LABEL]: "old", "nvidia.com/gpu.deploy.operator-validator": "true", ...labels }, annotations: { [OPERANDS_DRIVER_ANNOTATION]: "gpu-operator/drv", ...annotations } },
  spec: {},
}) as Node;

const daemonSet = (name: string, hash: string, generation = 3, numberReady = 0): DaemonSet => ({
  metadata: { name, namespace: "gpu-operator", uid: `uid-${name}`, generation },
  status: { numberReady },
  spec: { template: { metadata: { annotations: { [TEMPLATE_HASH_ANNOTATION]: hash } }, spec: { nodeSelector: { [POOL_NODE_LABEL]: name }, containers: [{ name: DRIVER_CONTAINER, image: `reg/driver:${name}` }] } } },
}) as unknown as DaemonSet;

const driverPod = (nodeName: string, pool: string, hash: string, ready: boolean): Pod => ({
  metadata: { name: `drv-${nodeName}`, namespace: "gpu-operator", uid: `drv-${nodeName}`, labels: { [POOL_NODE_LABEL]: pool }, annotations: { [TEMPLATE_HASH_ANNOTATION]: hash } },
  spec: { nodeName, containers: [{ name: DRIVER_CONTAINER, image: `reg/driver:${pool}` }] },
  status: { conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
}) as unknown as Pod;

const validatorPod = (nodeName: string, ready: boolean): Pod => ({
  metadata: { name: `val-${nodeName}`, namespace: "gpu-operator", uid: `val-${nodeName}`, labels: { app: "nvidia-operator-validator", "app.kubernetes.io/part-of": "gpuop" } },
  spec: { nodeName },
  status: { conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
}) as unknown as Pod;

type Observe = { observe(i: UpgradeInputs, s: unknown, now: number, listed: Map<string, UpgradeNode>): Promise<{ changed: UpgradeNode[]; removed: string[] }>; observed: Map<string, { view: UpgradeNode }> };

/** What observe (the step under test) tells the planner. */
async function observe(ex: UpgradeExecutor, input: UpgradeInputs): Promise<{ changed: UpgradeNode[]; removed: string[] }> {
  const settings = upgradeSettings(undefined, input.deployableNodes);
  return (ex as unknown as Observe).observe(input, settings, Date.now(), new Map());
}

/** The executor's views of the input's nodes after a pass's observe. */
async function views(ex: UpgradeExecutor, input: UpgradeInputs): Promise<UpgradeNode[]> {
  await observe(ex, input);
  const observed = (ex as unknown as Observe).observed;
  return input.nodes.flatMap((n) => observed.get(n.metadata.name ?? "")?.view ?? []);
}

test("UpgradeExecutor: a node's view is kept while nothing it is made of changes, and each kept view equals a fresh one", async () => {
  const drivers = new PodsByNode();
  const operands = new PodsByNode();
  let nodes = [node("gpu-a"), node("gpu-b", { [UPGRADE_STATE_LABEL]: "validation-required" })];
  let daemonSets = [daemonSet("old", "h1"), daemonSet("new", "h9")];
  let pools = [{ name: "new", nodes: ["gpu-a", "gpu-b"] }];
  for (const n of ["gpu-a", "gpu-b"]) drivers.update("added", driverPod(n, "old", "h1", true));
  operands.update("added", validatorPod("gpu-b", false));
  let hold = new Set<string>();
  const input = (): UpgradeInputs => ({ nodes, pools, hold, daemonSets, driverPods: drivers, operandPods: operands, upgradePolicy: undefined, deployableNodes: 2 });
  const memo = executor();
  const check = async (what: string) => {
    const kept = await views(memo, input());
    assert.deepEqual(kept, await views(executor(), input()), what);
    return kept;
  };

  const first = await check("first pass");
  const again = await check("nothing changed");
  assert.equal(again[0], first[0], "an unchanged node keeps its view");
  assert.equal(again[1], first[1]);

  // Only gpu-b's validator became Ready: gpu-a's view stays, gpu-b's follows.
  operands.update("modified", validatorPod("gpu-b", true), validatorPod("gpu-b", false));
  const validated = await check("validator Ready");
  assert.equal(validated[0], first[0]);
  assert.equal(validated[1]!.operandPods?.[0]?.ready, true);

  // Only gpu-a's driver pod changed (no longer Ready).
  drivers.update("modified", driverPod("gpu-a", "old", "h1", false), driverPod("gpu-a", "old", "h1", true));
  const notReady = await check("driver pod not Ready");
  assert.equal(notReady[0]!.driver?.ready, false);
  assert.equal(notReady[1], validated[1]);

  // The pool's DaemonSet's status moved (a pod became Ready elsewhere): its spec is the same, so every view stays.
  daemonSets = [daemonSet("old", "h1", 3, 7), daemonSet("new", "h9", 3, 2)];
  const statusOnly = await check("DaemonSet status changed");
  assert.equal(statusOnly[0], notReady[0], "a DaemonSet's status is no reason to work a view out again");
  assert.equal(statusOnly[1], notReady[1]);

  // The pool's DaemonSet has a new template (a new generation): its pods are no longer current.
  daemonSets = [daemonSet("old", "h2", 4), daemonSet("new", "h9")];
  const newTemplate = await check("new template");
  assert.equal(newTemplate[1]!.driver?.current, false);

  // The node object changed (cordoned).
  nodes = [{ ...nodes[0]!, spec: { unschedulable: true } } as Node, nodes[1]!];
  const cordoned = await check("node changed");
  assert.equal(cordoned[0]!.unschedulable, true);

  // The pools the policy wants changed: gpu-a leaves gpuop.
  pools = [{ name: "new", nodes: ["gpu-b"] }];
  const moved = await check("pools changed");
  assert.equal(moved[0]!.desiredPool, undefined);

  // gpu-b is held (its new pool's image is missing): it keeps the pool it has while that pool's
  // DaemonSet selects it; held no more, it wants the new pool again. Nothing else changed.
  hold = new Set(["gpu-b"]);
  const held = await check("node held");
  assert.equal(held[1]!.desiredPool, "old");
  hold = new Set(["gpu-b"]);
  assert.equal((await check("still held"))[1]!.desiredPool, "old");
  hold = new Set();
  const released = await check("hold released");
  assert.equal(released[1]!.desiredPool, "new");

  // A node gone is forgotten, and comes back with a fresh view.
  nodes = [nodes[1]!];
  await check("a node removed");
  nodes = [node("gpu-a"), nodes[0]!];
  await check("a node back");

  // Views are shared between passes: they are frozen, so no step can change one in place.
  assert.ok(Object.isFrozen((await views(memo, input()))[0]));
});

test("UpgradeExecutor: told which nodes changed, a pass looks at those only, and every view still equals a fresh one", async () => {
  const drivers = new PodsByNode();
  const operands = new PodsByNode();
  const cache = new Map<string, Node>();
  for (const n of [node("gpu-a"), node("gpu-b"), node("gpu-c", { [UPGRADE_STATE_LABEL]: "validation-required" })]) cache.set(n.metadata.name!, n);
  for (const n of cache.keys()) drivers.update("added", driverPod(n, "old", "h1", true));
  let daemonSets = [daemonSet("old", "h1"), daemonSet("new", "h9")];
  const pools = [{ name: "new", nodes: ["gpu-a", "gpu-b", "gpu-c"] }];
  let hold = new Set<string>();
  let names = new Set<string>();
  const input = (): UpgradeInputs => ({ nodes: [...cache.values()], pools, hold, daemonSets, driverPods: drivers, operandPods: operands, upgradePolicy: undefined, deployableNodes: cache.size, changed: { names, node: (n) => cache.get(n) } });
  const memo = executor();
  const pass = async (what: string, changedNames: string[]) => {
    names = new Set(changedNames);
    const told = await observe(memo, input());
    const fresh = await views(executor(), { ...input(), changed: undefined });
    const observed = (memo as unknown as Observe).observed;
    assert.deepEqual([...cache.keys()].flatMap((n) => observed.get(n)?.view ?? []), fresh, what);
    return { changed: told.changed.map((v) => v.name).sort(), removed: told.removed };
  };

  assert.deepEqual(await pass("first pass: every node", []), { changed: ["gpu-a", "gpu-b", "gpu-c"], removed: [] });
  assert.deepEqual(await pass("nothing changed", []), { changed: [], removed: [] });
  drivers.update("modified", driverPod("gpu-a", "old", "h1", false), driverPod("gpu-a", "old", "h1", true));
  assert.deepEqual(await pass("gpu-a's driver pod", ["gpu-a"]), { changed: ["gpu-a"], removed: [] });
  cache.set("gpu-b", { ...cache.get("gpu-b")!, spec: { unschedulable: true } } as Node);
  assert.deepEqual(await pass("gpu-b cordoned", ["gpu-b"]), { changed: ["gpu-b"], removed: [] });
  // Named for its pods, which did not change in the end: the view stands.
  assert.deepEqual(await pass("gpu-b named again", ["gpu-b"]), { changed: [], removed: [] });
  cache.delete("gpu-c");
  drivers.update("deleted", driverPod("gpu-c", "old", "h1", true));
  assert.deepEqual(await pass("gpu-c gone", ["gpu-c"]), { changed: [], removed: ["gpu-c"] });
  // Something every view is made of: the pool's DaemonSet has a new template. Nobody named a node.
  daemonSets = [daemonSet("old", "h2", 4), daemonSet("new", "h9")];
  assert.deepEqual(await pass("new template", []), { changed: ["gpu-a", "gpu-b"], removed: [] });
  // A hold, and its release: the held node is looked at though nobody named it.
  hold = new Set(["gpu-a"]);
  assert.deepEqual(await pass("gpu-a held", []), { changed: ["gpu-a"], removed: [] });
  hold = new Set(["gpu-a"]);
  assert.deepEqual(await pass("still held", []), { changed: [], removed: [] });
  hold = new Set();
  assert.deepEqual(await pass("released", []), { changed: ["gpu-a"], removed: [] });
  // A node that comes back.
  cache.set("gpu-c", node("gpu-c"));
  assert.deepEqual(await pass("gpu-c back", ["gpu-c"]), { changed: ["gpu-c"], removed: [] });
});
