// Which node changes wake the driver controller (labelsMatter): the operand gates alone do not,
// except on a node in a step that closes them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AppliedDaemonSet, DriverMemory, labelsMatter } from "./driver-memory.ts";
import type { DaemonSet, Node } from "../kube/types.ts";
import type { DriverDaemonSet } from "../core/render.ts";

const node = (labels: Record<string, string>): Node => ({ metadata: { name: "gpu-1", labels } }) as Node;
const base = { "nvidia.com/gpu.present": "true", "gpuop.nvidia.com/driver-pool": "nvidia-driver-daemonset-ubuntu22.04" };

test("labelsMatter: a gate opening or closing alone is no reason for a pass, but where the step closes gates it is", () => {
  const gate = "gpuop.nvidia.com/gate.device-plugin";
  assert.equal(labelsMatter(node({ ...base, [gate]: "open" }), node(base)), false, "a gate opened");
  assert.equal(labelsMatter(node(base), node({ ...base, [gate]: "open" })), false, "a gate closed");
  assert.equal(labelsMatter(node({ ...base, "nvidia.com/gpu-driver-upgrade-state": "validation-required", [gate]: "open" }), node({ ...base, "nvidia.com/gpu-driver-upgrade-state": "validation-required" })), false, "validation: gates open as the operands come back");
  for (const state of ["pod-deletion-required", "drain-required", "pod-restart-required"]) {
    assert.equal(labelsMatter(node({ ...base, "nvidia.com/gpu-driver-upgrade-state": state, [gate]: "open" }), node({ ...base, "nvidia.com/gpu-driver-upgrade-state": state })), true, state);
  }
  assert.equal(labelsMatter(node(base), node(base)), false, "nothing changed");
  assert.equal(labelsMatter(node({ ...base, "nvidia.com/gpu-driver-upgrade-state": "upgrade-done" }), node(base)), true, "an upgrade step");
  assert.equal(labelsMatter(node({ ...base, "feature.node.kubernetes.io/kernel-version.full": "6.8.0-51-generic", [gate]: "open" }), node(base)), true, "a kernel change with a gate");
  assert.equal(labelsMatter(node({ ...base, "nvidia.com/gpu.deploy.operator-validator": "true" }), node(base)), true, "an operand's deploy label (the validator's is read)");
});

const gpu = (name: string, kernel: string, extra: Record<string, string> = {}): Node =>
  ({
    metadata: {
      name,
      resourceVersion: "1",
      labels: { "feature.node.kubernetes.io/pci-10de.present": "true", "feature.node.kubernetes.io/kernel-version.full": kernel, "feature.node.kubernetes.io/system-os_release.ID": "ubuntu", "feature.node.kubernetes.io/system-os_release.VERSION_ID": "22.04", ...extra },
    },
    status: { conditions: [{ type: "Ready", status: "True" }] },
  }) as Node;

/** A memory fed as the node watch feeds it, its views brought up to date as a pass does. */
function watched(memory = new DriverMemory({ gpuNodeOptions: {} })) {
  const cache = new Map<string, Node>();
  return {
    memory,
    show(nodes: Node[]) {
      const next = new Map(nodes.map((n) => [n.metadata.name!, n]));
      for (const [name, old] of cache) if (!next.has(name)) memory.nodeChanged("deleted", old);
      for (const [name, n] of next) if (cache.get(name) !== n) memory.nodeChanged(cache.has(name) ? "modified" : "added", n, cache.get(name));
      cache.clear();
      for (const [name, n] of next) cache.set(name, n);
      memory.refreshViews((name) => cache.get(name), () => [...cache.values()]);
      return memory.split();
    },
  };
}

test("DriverMemory.split: the same arrays while every node's facts are the same, and always what a fresh split gives", () => {
  const memory = watched();
  const fresh = () => watched().show(nodes);
  const freshLabels = () => {
    const w = watched();
    w.show(nodes);
    return w.memory.labelsToSet;
  };
  let nodes = [gpu("gpu-b", "6.8.0-40-generic"), gpu("gpu-a", "5.15.0-69-generic"), { metadata: { name: "gpu-c", labels: { "nvidia.com/gpu.present": "true" } } } as Node];
  const first = memory.show(nodes);
  assert.deepEqual(first.gpuNodes.map((n) => n.name), ["gpu-a", "gpu-b"], "sorted by name");
  assert.equal(first.problems.length, 1);
  assert.deepEqual([...memory.memory.labelsToSet.keys()].sort(), ["gpu-a", "gpu-b", "gpu-c"], "GPU labels due on every node");

  // A new node object whose facts are the same (an upgrade step): the same arrays.
  nodes = [{ ...nodes[0]!, metadata: { ...nodes[0]!.metadata, resourceVersion: "2", labels: { ...nodes[0]!.metadata.labels, "nvidia.com/gpu-driver-upgrade-state": "upgrade-done" } } }, nodes[1]!, nodes[2]!];
  const again = memory.show(nodes);
  assert.equal(again.gpuNodes, first.gpuNodes, "unchanged facts keep the array");
  assert.equal(again.problems, first.problems);

  // A kernel change: new arrays, equal to a fresh split.
  nodes = [gpu("gpu-b", "6.8.0-51-generic"), nodes[1]!, nodes[2]!];
  const changed = memory.show(nodes);
  assert.notEqual(changed.gpuNodes, first.gpuNodes);
  assert.deepEqual(changed, fresh());
  assert.equal(changed.gpuNodes.find((n) => n.name === "gpu-b")?.kernel, "6.8.0-51-generic");

  // A node gone: new arrays too.
  nodes = [nodes[0]!, nodes[2]!];
  assert.deepEqual(memory.show(nodes), fresh());
  assert.equal(memory.show(nodes).gpuNodes.length, 1);
  assert.deepEqual([...memory.memory.labelsToSet.keys()].sort(), ["gpu-b", "gpu-c"], "a node gone has no labels due");

  // Labelled as due: no labels due any more; a problem node that gets its labels joins the GPU nodes.
  const labelled = { ...nodes[0]!, metadata: { ...nodes[0]!.metadata, labels: { ...nodes[0]!.metadata.labels, ...memory.memory.labelsToSet.get("gpu-b") } } } as Node;
  nodes = [labelled, gpu("gpu-c", "5.15.0-69-generic")];
  assert.deepEqual(memory.show(nodes), fresh());
  assert.deepEqual(new Map(memory.memory.labelsToSet), new Map(freshLabels()));
  assert.equal(memory.memory.labelsToSet.has("gpu-b"), false, "labelled as due: nothing due");
});

test("DriverMemory.poolAssigned: follows the nodes' pool labels through changes, relabels and deletions", () => {
  const memory = new DriverMemory({ gpuNodeOptions: {} });
  const pool = (name: string, p?: string): Node => ({ metadata: { name, labels: p ? { "gpuop.nvidia.com/driver-pool": p } : {} } }) as Node;
  memory.nodeChanged("added", pool("n1", "old"));
  memory.nodeChanged("added", pool("n2", "old"));
  memory.nodeChanged("added", pool("n3"));
  assert.equal(memory.poolAssigned("old"), true);
  assert.equal(memory.poolAssigned("new"), false);
  memory.nodeChanged("modified", pool("n1", "new"), pool("n1", "old"));
  memory.nodeChanged("modified", pool("n3", "new"), pool("n3"));
  assert.equal(memory.poolAssigned("old"), true, "n2 is still on it");
  memory.nodeChanged("deleted", pool("n2", "old")); // as the informer tells it: no old object
  assert.equal(memory.poolAssigned("old"), false, "no node left on it");
  assert.equal(memory.poolAssigned("new"), true);
  memory.nodeChanged("modified", pool("n1"), pool("n1", "new"));
  memory.nodeChanged("modified", pool("n3"), pool("n3", "new"));
  assert.equal(memory.poolAssigned("new"), false);
});

test("AppliedDaemonSet: a DaemonSet found applied stays so through status updates, not through a new generation, labels, owners or desired object", () => {
  const desired = { metadata: { name: "pool-a" }, spec: {} } as unknown as DriverDaemonSet;
  const live = (over: Partial<DaemonSet["metadata"]> = {}, numberReady = 0): DaemonSet =>
    ({ metadata: { name: "pool-a", uid: "u-1", generation: 7, labels: { app: "nvidia-driver-daemonset" }, ownerReferences: [{ kind: "ClusterPolicy", name: "cluster-policy", uid: "p-1" }], ...over }, status: { numberReady } }) as unknown as DaemonSet;
  const applied = new AppliedDaemonSet(desired, live());
  assert.ok(applied.matches(desired, live({}, 42)), "a status update leaves it applied");
  assert.ok(!applied.matches(desired, live({ generation: 8 })), "a new generation (spec change)");
  assert.ok(!applied.matches(desired, live({ uid: "u-2" })), "a DaemonSet made again");
  assert.ok(!applied.matches(desired, live({ labels: { app: "other" } })), "labels changed");
  assert.ok(!applied.matches(desired, live({ ownerReferences: [] })), "owners changed");
  assert.ok(!applied.matches({ ...desired } as DriverDaemonSet, live()), "another desired object");
});
