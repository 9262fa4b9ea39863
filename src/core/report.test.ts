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

const DIGEST_A = `sha256:${"a".repeat(64)}`;
const DIGEST_B = `sha256:${"b".repeat(64)}`;
const conventionalDs = (containers: { name: string; image: string }[], labels: Record<string, string> | undefined = { "nvidia.com/precompiled": "false" }) => ({
  metadata: { name: "nvidia-driver-daemonset-ubuntu22.04", ...(labels ? { labels } : {}) },
  spec: { template: { spec: { containers } } },
});
const onPool = (name: string) => node(name, "5.15.0-69-generic", { [POOL_NODE_LABEL]: "nvidia-driver-daemonset-ubuntu22.04" });
type TestPod = Parameters<typeof driverStatusRows>[2][number];
const podOn = (name: string, nodeName: string, over: Partial<TestPod> = {}): TestPod => ({
  metadata: { name, labels: { [POOL_NODE_LABEL]: "nvidia-driver-daemonset-ubuntu22.04" } },
  spec: { nodeName, containers: [{ name: "nvidia-driver-ctr", image: `r/driver:${name}` }] },
  status: { phase: "Running", conditions: [{ type: "Ready", status: "True" }] },
  ...over,
});
const rowOf = (pods: TestPod[], ds = conventionalDs([{ name: "nvidia-driver-ctr", image: "r/driver:550.90.07-ubuntu22.04" }])) => driverStatusRows([onPool("n")], [ds], pods)[0]!;

test("IMAGE is the driver container's, pinned to its own container's digest only when the runtime reports a whole one", () => {
  const statuses = [{ name: "sidecar", imageID: `r/side@${DIGEST_A}` }, { name: "nvidia-driver-ctr", imageID: `docker-pullable://r/driver@${DIGEST_B}` }];
  const twoContainers = { nodeName: "n", containers: [{ name: "sidecar", image: "r/side:1" }, { name: "nvidia-driver-ctr", image: "r/driver:550" }] };
  assert.equal(rowOf([podOn("p", "n", { spec: twoContainers, status: { phase: "Running", containerStatuses: statuses } })]).image, `r/driver:550@${DIGEST_B}`);
  // Without a container of that name, the first one is the driver's.
  const other = { nodeName: "n", containers: [{ name: "driver", image: "r/driver:551" }, { name: "x", image: "r/x:1" }] };
  assert.equal(rowOf([podOn("p", "n", { spec: other, status: { phase: "Running", containerStatuses: [{ name: "x", imageID: `r/x@${DIGEST_A}` }] } })]).image, "r/driver:551", "another container's digest is not this image's");
  assert.equal(rowOf([podOn("p", "n", { spec: { nodeName: "n", containers: [] } })]).image, "");
  assert.equal(rowOf([podOn("p", "n", { spec: { nodeName: "n" } })]).image, "");
  // A digest that is not the whole end of the imageID, an image already pinned, no status: the spec's image as it is.
  const one = { nodeName: "n", containers: [{ name: "nvidia-driver-ctr", image: "r/driver:550" }] };
  assert.equal(rowOf([podOn("p", "n", { spec: one, status: { containerStatuses: [{ name: "nvidia-driver-ctr", imageID: `r/driver@${DIGEST_A}0` }] } })]).image, "r/driver:550");
  assert.equal(rowOf([podOn("p", "n", { spec: one, status: { containerStatuses: [{ name: "nvidia-driver-ctr", imageID: `r/driver@${DIGEST_A}/x` }] } })]).image, "r/driver:550");
  assert.equal(rowOf([podOn("p", "n", { spec: one, status: { containerStatuses: [{ name: "nvidia-driver-ctr" }] } })]).image, "r/driver:550");
  const pinned = { nodeName: "n", containers: [{ name: "nvidia-driver-ctr", image: `r/driver@${DIGEST_B}` }] };
  assert.equal(rowOf([podOn("p", "n", { spec: pinned, status: { containerStatuses: [{ name: "nvidia-driver-ctr", imageID: `r/driver@${DIGEST_A}` }] } })]).image, `r/driver@${DIGEST_B}`);
  assert.equal(rowOf([{ metadata: { name: "p" }, spec: { nodeName: "n", containers: [{ name: "nvidia-driver-ctr", image: "r/driver:550" }] } }]).image, "r/driver:550");
});

test("WANTED is the DaemonSet's driver container, else its first, else nothing", () => {
  assert.equal(rowOf([], conventionalDs([{ name: "init-ish", image: "r/other:1" }, { name: "nvidia-driver-ctr", image: "r/driver:560" }])).wantedImage, "r/driver:560");
  assert.equal(rowOf([], conventionalDs([{ name: "driver", image: "r/driver:561" }, { name: "x", image: "r/x:1" }])).wantedImage, "r/driver:561");
  assert.equal(rowOf([], conventionalDs([])).wantedImage, "");
  assert.equal(driverStatusRows([onPool("n")], [{ metadata: { name: "nvidia-driver-daemonset-ubuntu22.04" } }], [])[0]!.wantedImage, "");
});

test("PHASE as kubectl shows it: a waiting reason of any container wins, then Running only when Ready", () => {
  const phase = (status: TestPod["status"]) => rowOf([podOn("p", "n", { status })]).phase;
  assert.equal(phase({ phase: "Running", containerStatuses: [{ state: { running: {} } }, { state: { waiting: { reason: "CrashLoopBackOff" } } }] }), "CrashLoopBackOff");
  assert.equal(phase({ phase: "Pending", containerStatuses: [{ name: "a" }, { state: { waiting: {} } }] }), "Pending");
  assert.equal(phase({ phase: "Running", containerStatuses: [{ state: { running: {} } }], conditions: [{ type: "Ready", status: "True" }] }), "Running");
  // Ready among other conditions counts; any other condition True does not.
  assert.equal(phase({ phase: "Running", conditions: [{ type: "PodScheduled", status: "True" }, { type: "Ready", status: "True" }] }), "Running");
  assert.equal(phase({ phase: "Running", conditions: [{ type: "Initialized", status: "True" }, { type: "Ready", status: "False" }] }), "Running (not ready)");
  assert.equal(phase({ phase: "Running", conditions: [{ type: "ContainersReady", status: "True" }] }), "Running (not ready)");
  assert.equal(phase({ phase: "Running" }), "Running (not ready)");
  // Other phases are shown as they are, ready or not.
  assert.equal(phase({ phase: "Succeeded" }), "Succeeded");
  assert.equal(phase({ phase: "Failed", conditions: [{ type: "Ready", status: "True" }] }), "Failed");
  assert.equal(phase({}), "Pending");
  assert.equal(rowOf([{ metadata: { name: "p" }, spec: { nodeName: "n" } }]).phase, "Pending");
});

test("the pod shown for a node: its own pool's live pod over a deleting one or one of the pool it left, else the first listed", () => {
  const own = podOn("own", "n");
  const left = podOn("left", "n", { metadata: { name: "left", labels: { [POOL_NODE_LABEL]: "nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04" } } });
  const deleting = podOn("deleting", "n", { metadata: { name: "deleting", labels: { [POOL_NODE_LABEL]: "nvidia-driver-daemonset-ubuntu22.04" }, deletionTimestamp: "2026-01-01T00:00:00Z" } });
  const unlabelled = podOn("unlabelled", "n", { metadata: { name: "unlabelled", ownerReferences: [{ kind: "DaemonSet", name: "x" }] } });
  for (const pods of [[own, left], [left, own], [own, deleting], [deleting, own], [deleting, left, own], [own, unlabelled], [unlabelled, own]]) {
    assert.equal(rowOf(pods).pod, "own", pods.map((p) => p.metadata.name).join(","));
  }
  // A live pod of another pool still runs a driver; a deleting one of the node's pool is on its way out.
  assert.equal(rowOf([deleting, left]).pod, "left");
  assert.equal(rowOf([left, deleting]).pod, "left");
  // Equal rank: the first listed stays.
  assert.equal(rowOf([podOn("first", "n"), podOn("second", "n")]).pod, "first");
  assert.equal(rowOf([unlabelled, { ...left, metadata: { name: "left2", labels: { [POOL_NODE_LABEL]: "other" } } }]).pod, "unlabelled");
  // Pods not on a node, or on a node that is not a GPU node, show nowhere.
  const rows = driverStatusRows([onPool("n")], [conventionalDs([])], [{ metadata: { name: "unscheduled" } }, { metadata: { name: "unscheduled2" }, spec: {} }, podOn("gone1", "gone"), podOn("gone2", "gone")]);
  assert.equal(rows[0]!.pod, "");
  assert.equal(rows.length, 1);
});

test("MODE: precompiled by the DaemonSet's label, fallback only by the operator's fallback note, otherwise conventional", () => {
  const keeping = onPool("k");
  keeping.metadata.annotations = { ...keeping.metadata.annotations, "gpuop.nvidia.com/driver-fallback": "keeps the driver it runs now: the registry has no precompiled image r/driver:550-5.15.0-70-generic-ubuntu22.04" };
  const fb = onPool("f");
  fb.metadata.annotations = { ...fb.metadata.annotations, "gpuop.nvidia.com/driver-fallback": "fallback to r/driver:550.90.07-ubuntu22.04: the registry has no precompiled image x" };
  const rows = driverStatusRows([keeping, fb, onPool("plain")], [conventionalDs([{ name: "nvidia-driver-ctr", image: "r/driver:550.90.07-ubuntu22.04" }], undefined)], []);
  assert.deepEqual(rows.map((r) => [r.node, r.mode, r.reason]), [
    ["f", "fallback", "fallback to r/driver:550.90.07-ubuntu22.04: the registry has no precompiled image x"],
    ["k", "conventional", "keeps the driver it runs now: the registry has no precompiled image r/driver:550-5.15.0-70-generic-ubuntu22.04"],
    ["plain", "conventional", undefined],
  ]);
  assert.equal("reason" in rows[2]!, false);
  // A precompiled DaemonSet is precompiled whatever the note says.
  const pre = { ...conventionalDs([]), metadata: { name: "nvidia-driver-daemonset-ubuntu22.04", labels: { "nvidia.com/precompiled": "true" } } };
  assert.equal(driverStatusRows([fb], [pre], [])[0]!.mode, "precompiled");
});

test("a node without a driver pod: NoPod, or why the driver is not deployed; with no pool, nothing", () => {
  const rows = driverStatusRows([onPool("n"), node("none", "5.15.0-69-generic"), node("off", "5.15.0-69-generic", { "nvidia.com/gpu.deploy.driver": "false" })], [conventionalDs([{ name: "nvidia-driver-ctr", image: "r/driver:550.90.07-ubuntu22.04" }])], []);
  assert.deepEqual(rows, [
    { node: "n", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04", mode: "conventional", daemonSet: "nvidia-driver-daemonset-ubuntu22.04", image: "", wantedImage: "r/driver:550.90.07-ubuntu22.04", upgradeState: "", pod: "", phase: "NoPod" },
    { node: "none", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04", mode: "none", daemonSet: "", image: "", wantedImage: "", upgradeState: "", pod: "", phase: "NoPod" },
    { node: "off", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04", mode: "none", daemonSet: "", image: "", wantedImage: "", upgradeState: "", pod: "", phase: "not deployed (nvidia.com/gpu.deploy.driver=false)" },
  ]);
});

test("problem rows are whole rows, sorted among the others by node name", () => {
  const rows = driverStatusRows([onPool("m"), { metadata: { name: "a-bare", labels: { "nvidia.com/gpu.present": "true" } } }, { metadata: { name: "z-bare", labels: { "nvidia.com/gpu.present": "true" } } }], [], []);
  assert.deepEqual(rows.map((r) => r.node), ["a-bare", "m", "z-bare"]);
  const { problem, ...rest } = rows[0]!;
  assert.deepEqual(rest, { node: "a-bare", kernel: "", osTag: "", mode: "none", daemonSet: "", image: "", wantedImage: "", upgradeState: "", pod: "", phase: "Problem" });
  assert.match(problem!, /a-bare/);
});

// Surviving mutants in report.ts, each equivalent (no input of driverStatusRows tells it apart):
// - runningImage `pod?.spec?.containers` -> `pod?.spec.containers`, and rank's `p.spec?.nodeName ?? ""` ->
//   `p.spec.nodeName` / `&& ""` / `?? "<other>"`: only pods with a spec.nodeName get that far.
// - the `if (!n) continue` -> `if (false)`: a pod without a node is then filed under `undefined`,
//   which no node's name (a string) ever looks up.
// - `labels[POOL_NODE_LABEL] ?? ""` -> another string, and the `?? ""` in the name maps: they only
//   matter for a DaemonSet or node without a name, which the API server never returns.
// - `nodeAnnotations.get(n.name)?.` / `nodeLabels.get(n.name)?.` -> `.`: every GPU node row comes from
//   the same node list, so the lookup always finds it.
// - runningImage's `pod?.status` -> `pod.status`: without a pod there is no container, and it returned "" before.
// - the `?? ""` fallbacks for a missing imageID (-> another text) and containerStatuses (-> a one-element
//   array of text): neither text holds a digest or a waiting reason, so the result is the same.
