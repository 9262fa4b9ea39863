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
    [{ metadata: { name: "pod-b" }, spec: { nodeName: "b", containers: [{ name: "nvidia-driver-ctr", image: "r/driver:525-5.15.0-69-generic-ubuntu22.04" }] }, status: { phase: "Pending", containerStatuses: [{ state: { waiting: { reason: "ImagePullBackOff" } } }] } }],
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
    wantedImage: "r/driver:525-5.15.0-69-generic-ubuntu22.04",
    upgradeState: "",
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

test("IMAGE shows what the pod runs, WANTED what its DaemonSet wants, with the node's upgrade state", () => {
  const digest = `sha256:${"a".repeat(64)}`;
  const ds = { metadata: { name: "nvidia-driver-daemonset-ubuntu22.04", labels: { "nvidia.com/precompiled": "false" } }, spec: { template: { spec: { containers: [{ name: "nvidia-driver-ctr", image: "r/driver:550.90.07-ubuntu22.04" }] } } } };
  const pod = (name: string, image: string, deleting = false) => ({
    metadata: { name, labels: { [POOL_NODE_LABEL]: ds.metadata.name }, ...(deleting ? { deletionTimestamp: "2026-01-01T00:00:00Z" } : {}) },
    spec: { nodeName: "n", containers: [{ name: "nvidia-driver-ctr", image }] },
    status: { phase: "Running", conditions: [{ type: "Ready", status: "True" }], containerStatuses: [{ name: "nvidia-driver-ctr", imageID: `docker-pullable://r/driver@${digest}` }] },
  });
  const rows = driverStatusRows(
    [node("n", "5.15.0-69-generic", { [POOL_NODE_LABEL]: ds.metadata.name, "nvidia.com/gpu-driver-upgrade-state": "upgrade-required" })],
    [ds],
    [pod("old", "r/driver:550.54.15-ubuntu22.04"), pod("older", "r/driver:535.0-ubuntu22.04", true)],
  );
  assert.equal(rows[0]!.image, `r/driver:550.54.15-ubuntu22.04@${digest}`);
  assert.equal(rows[0]!.wantedImage, "r/driver:550.90.07-ubuntu22.04");
  assert.equal(rows[0]!.upgradeState, "upgrade-required");
  assert.equal(rows[0]!.pod, "old");
});
