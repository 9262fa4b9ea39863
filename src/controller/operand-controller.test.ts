// Which node changes make the operand controller work out the cluster's facts (and render) again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { clusterFactsChanged } from "./operand-controller.ts";
import type { Node } from "../kube/types.ts";

const node = (labels: Record<string, string>, runtime = "containerd://2.1.4"): Node =>
  ({ metadata: { name: "gpu-1", labels }, status: { nodeInfo: { containerRuntimeVersion: runtime } } }) as unknown as Node;
const gpu = { "feature.node.kubernetes.io/pci-10de.present": "true", "gpuop.nvidia.com/driver-pool": "p1" };

test("clusterFactsChanged: upgrade steps, gates and pools leave the facts alone; runtimes, GPU presence, the restriction label and nodes coming and going do not", () => {
  const before = node(gpu);
  assert.equal(clusterFactsChanged("modified", node({ ...gpu, "nvidia.com/gpu-driver-upgrade-state": "cordon-required" }), before, undefined), false, "an upgrade step");
  assert.equal(clusterFactsChanged("modified", node({ ...gpu, "gpuop.nvidia.com/gate.device-plugin": "open" }), before, undefined), false, "a gate");
  assert.equal(clusterFactsChanged("modified", node({ ...gpu, "gpuop.nvidia.com/driver-pool": "p2" }), before, undefined), false, "a pool move");
  assert.equal(clusterFactsChanged("modified", node(gpu, "containerd://2.2.0"), before, undefined), true, "a new runtime");
  assert.equal(clusterFactsChanged("modified", node({ "gpuop.nvidia.com/driver-pool": "p1" }), before, undefined), true, "no GPU any more");
  assert.equal(clusterFactsChanged("added", before, undefined, undefined), true, "a node added");
  assert.equal(clusterFactsChanged("deleted", before, undefined, undefined), true, "a node deleted");
  const restriction = { key: "example.com/gpu", value: "true" };
  assert.equal(clusterFactsChanged("modified", node({ ...gpu, "example.com/gpu": "true" }), before, restriction), true, "the admin-only GPU label set");
  assert.equal(clusterFactsChanged("modified", node({ ...gpu, "example.com/gpu": "true" }), before, undefined), false, "the same label without a restriction");
});
