import { test } from "node:test";
import assert from "node:assert/strict";
import { driverStatusRows } from "./report.ts";
import { POOL_NODE_LABEL } from "./rollout.ts";
import { gpuNodeObject } from "../../test/harness/nodes.ts";

const node = (name: string, kernel: string, extra: Record<string, string> = {}) =>
  gpuNodeObject({ name, kernel, labels: { "nvidia.com/gpu.deploy.driver": "true", ...extra } });

test("one row per GPU node joining its pool's DaemonSet and its driver pod", () => {
  const ds = {
    metadata: { name: "nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04", labels: { "nvidia.com/precompiled": "true" } },
    spec: { template: { spec: { containers: [{ name: "nvidia-driver-ctr", image: "r/driver:525-5.15.0-69-generic-ubuntu22.04" }] } } },
  };
  const rows = driverStatusRows(
    [
      node("b", "5.15.0-69-generic", { [POOL_NODE_LABEL]: ds.metadata.name }),
      node("a", "5.15.0-70-generic", { "nvidia.com/gpu.deploy.driver": "pre-installed" }),
      { metadata: { name: "cpu", labels: {} } },
    ],
    [ds],
    [{ metadata: { name: "pod-b" }, spec: { nodeName: "b" }, status: { phase: "Pending", containerStatuses: [{ state: { waiting: { reason: "ImagePullBackOff" } } }] } }],
  );
  assert.deepEqual(rows.map((r) => r.node), ["a", "b"]);
  assert.equal(rows[0]!.phase, "not deployed (nvidia.com/gpu.deploy.driver=pre-installed)");
  assert.deepEqual(rows[1], {
    node: "b",
    kernel: "5.15.0-69-generic",
    osTag: "ubuntu22.04",
    mode: "precompiled",
    daemonSet: ds.metadata.name,
    image: "r/driver:525-5.15.0-69-generic-ubuntu22.04",
    pod: "pod-b",
    phase: "ImagePullBackOff",
  });
});

test("GPU nodes without NFD labels are listed with their problem", () => {
  const rows = driverStatusRows([{ metadata: { name: "bare", labels: { "nvidia.com/gpu.present": "true" } } }], [], []);
  assert.equal(rows[0]!.phase, "Problem");
  assert.match(rows[0]!.problem!, /bare/);
});

test("a node on the conventional fallback shows mode fallback and why; a DaemonSet that no longer selects the node gives mode none", () => {
  const conventional = {
    metadata: { name: "nvidia-driver-daemonset-ubuntu22.04", labels: { "nvidia.com/precompiled": "false" } },
    spec: { template: { spec: { nodeSelector: { "feature.node.kubernetes.io/system-os_release.ID": "ubuntu", [POOL_NODE_LABEL]: "nvidia-driver-daemonset-ubuntu22.04" }, containers: [{ name: "nvidia-driver-ctr", image: "r/driver:525.105.17-ubuntu22.04" }] } } },
  };
  const old = {
    metadata: { name: "nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04", labels: { "nvidia.com/precompiled": "true" } },
    spec: { template: { spec: { nodeSelector: { "feature.node.kubernetes.io/kernel-version.full": "5.15.0-69-generic", [POOL_NODE_LABEL]: "nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04" }, containers: [{ name: "nvidia-driver-ctr", image: "r/driver:525-5.15.0-69-generic-ubuntu22.04" }] } } },
  };
  const fb = node("fb", "5.15.0-70-generic", { [POOL_NODE_LABEL]: conventional.metadata.name });
  fb.metadata.annotations = { ...fb.metadata.annotations, "gpuop.nvidia.com/driver-fallback": "fallback to r/driver:525.105.17-ubuntu22.04: the registry has no precompiled image x" };
  const rebooted = node("rebooted", "5.15.0-70-generic", { [POOL_NODE_LABEL]: old.metadata.name });
  const rows = driverStatusRows([fb, rebooted], [conventional, old], []);
  assert.equal(rows[0]!.mode, "fallback");
  assert.match(rows[0]!.reason!, /the registry has no precompiled image x/);
  assert.equal(rows[1]!.mode, "none", "the old kernel's DaemonSet runs nothing on a node that booted another kernel");
  assert.equal(rows[1]!.daemonSet, "");
});
