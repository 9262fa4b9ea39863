// Which node changes wake the driver controller (labelsMatter): the operand gates alone do not,
// except on a node in a step that closes them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { labelsMatter } from "./driver-memory.ts";
import type { Node } from "../kube/types.ts";

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
