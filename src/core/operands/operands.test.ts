import { test } from "node:test";
import assert from "node:assert/strict";
import { UserError } from "../errors.ts";
import {
  GATE_OPEN,
  OPERAND_HASH_ANNOTATION,
  operandNodePatch,
  operandNodeSeries,
  operandPods,
  operandTransitions,
  operandStatuses,
  readyPods,
  type OperandPods,
  renderOperands,
  type OperandKey,
  type ReadyPods,
} from "./index.ts";
import { clusterRuntime } from "./toolkit.ts";
import type { ClusterPolicy } from "../policy.ts";

const policy = (spec: Record<string, unknown> = {}): ClusterPolicy => ({ metadata: { name: "cluster-policy", uid: "u1" }, spec: { driver: { version: "550.54.15" }, ...spec } });
const render = (spec: Record<string, unknown> = {}) => renderOperands({ policy: policy(spec), namespace: "gpu-ns", owner: { apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", name: "cluster-policy", uid: "u1" } });
const ds = (spec: Record<string, unknown>, name: string) => render(spec).daemonSets.find((d) => d.metadata.name === name)!;
const envOf = (c: { env?: { name: string; value?: string }[] } | undefined) => Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]));

test("defaults: NVIDIA's five DaemonSets with NVIDIA's names, app labels and images, and the exporter's Service", () => {
  const r = render();
  assert.deepEqual(r.daemonSets.map((d) => d.metadata.name).sort(), ["gpu-feature-discovery", "nvidia-container-toolkit-daemonset", "nvidia-dcgm-exporter", "nvidia-device-plugin-daemonset", "nvidia-operator-validator"]);
  for (const d of r.daemonSets) {
    assert.equal(d.spec.template.metadata.labels["app"], d.metadata.name);
    assert.deepEqual(d.spec.selector.matchLabels, { app: d.metadata.name });
    assert.equal(d.metadata.namespace, "gpu-ns");
    assert.equal(d.metadata.ownerReferences?.[0]?.uid, "u1");
    assert.equal(d.metadata.labels["app.kubernetes.io/managed-by"], undefined, "the driver controller prunes DaemonSets labelled managed-by=gpuop");
    assert.deepEqual(d.spec.template.spec.tolerations, [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
    assert.equal(d.spec.template.spec.priorityClassName, "system-node-critical");
  }
  const images = Object.fromEntries(r.daemonSets.map((d) => [d.metadata.name, d.spec.template.spec.containers[0]!.image]));
  assert.equal(images["nvidia-container-toolkit-daemonset"], "nvcr.io/nvidia/k8s/container-toolkit:v1.20.0");
  assert.equal(images["nvidia-device-plugin-daemonset"], "nvcr.io/nvidia/k8s-device-plugin:v0.20.0");
  assert.equal(images["gpu-feature-discovery"], "nvcr.io/nvidia/k8s-device-plugin:v0.20.0");
  assert.equal(images["nvidia-dcgm-exporter"], "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-distroless");
  assert.deepEqual(r.services.map((s) => [s.metadata.name, s.spec.ports[0]!.name, s.spec.ports[0]!.port]), [["nvidia-dcgm-exporter", "gpu-metrics", 9400]]);
  assert.deepEqual(r.disabled, []);
});

test("each DaemonSet selects nodes by NVIDIA's deploy label and gpuop's gate only", () => {
  assert.deepEqual(ds({}, "nvidia-device-plugin-daemonset").spec.template.spec.nodeSelector, { "nvidia.com/gpu.deploy.device-plugin": "true", "gpuop.nvidia.com/gate.device-plugin": "open" });
  assert.deepEqual(ds({}, "nvidia-container-toolkit-daemonset").spec.template.spec.nodeSelector, { "nvidia.com/gpu.deploy.container-toolkit": "true", "gpuop.nvidia.com/gate.container-toolkit": "open" });
});

test("the toolkit: driver-validation init, driver root mounted, no runtimeClassName; the others use nvidia", () => {
  const tk = ds({}, "nvidia-container-toolkit-daemonset");
  assert.equal(tk.spec.template.spec.runtimeClassName, undefined);
  assert.equal(tk.spec.template.spec.hostPID, true);
  assert.deepEqual(tk.spec.template.spec.initContainers?.map((c) => c.name), ["driver-validation"]);
  assert.equal(envOf(tk.spec.template.spec.initContainers?.[0]).COMPONENT, "driver");
  assert.equal(tk.spec.template.spec.initContainers?.[0]?.image, "nvcr.io/nvidia/cloud-native/gpu-operator-validator:v26.7.0");
  const vols = Object.fromEntries(tk.spec.template.spec.volumes.map((v) => [v.name, "hostPath" in v ? v.hostPath.path : ""]));
  assert.equal(vols["driver-install-dir"], "/run/nvidia/driver");
  assert.equal(vols["run-nvidia-validations"], "/run/nvidia/validations");
  const env = envOf(tk.spec.template.spec.containers[0]);
  assert.equal(env.RUNTIME, "containerd");
  assert.equal(env.CONTAINERD_RUNTIME_CLASS, "nvidia");
  assert.equal(env.NVIDIA_VISIBLE_DEVICES, "void");
  for (const name of ["nvidia-device-plugin-daemonset", "gpu-feature-discovery", "nvidia-dcgm-exporter", "nvidia-operator-validator"]) {
    assert.equal(ds({ operator: { runtimeClass: "nv-custom" } }, name).spec.template.spec.runtimeClassName, "nv-custom", name);
  }
  assert.deepEqual(ds({}, "nvidia-device-plugin-daemonset").spec.template.spec.initContainers?.map((c) => c.name), ["toolkit-validation"]);
  assert.deepEqual(ds({}, "nvidia-operator-validator").spec.template.spec.initContainers?.map((c) => c.name), ["driver-validation", "toolkit-validation", "cuda-validation", "plugin-validation"]);
  assert.deepEqual(ds({ devicePlugin: { enabled: false } }, "nvidia-operator-validator").spec.template.spec.initContainers?.map((c) => c.name), ["driver-validation", "toolkit-validation", "cuda-validation"]);
});

test("policy fields: image parts, env set-or-replace, pull secrets, resources", () => {
  const dp = ds({ devicePlugin: { repository: "registry.example.com/nv/", image: "plugin", version: "v9.9.9", env: [{ name: "FAIL_ON_INIT_ERROR", value: "false" }, { name: "EXTRA", value: "x" }], imagePullSecrets: ["pull"], resources: { limits: { cpu: 2 } } } }, "nvidia-device-plugin-daemonset");
  const c = dp.spec.template.spec.containers[0]!;
  assert.equal(c.image, "registry.example.com/nv/plugin:v9.9.9");
  assert.equal(envOf(c).FAIL_ON_INIT_ERROR, "false");
  assert.equal(envOf(c).EXTRA, "x");
  assert.equal(c.env!.filter((e) => e.name === "FAIL_ON_INIT_ERROR").length, 1);
  assert.deepEqual(dp.spec.template.spec.imagePullSecrets, [{ name: "pull" }]);
  assert.deepEqual(c.resources, { limits: { cpu: "2" } });
  assert.equal(ds({ gfd: { version: "sha256:" + "a".repeat(64), repository: "r.example.com", image: "gfd" } }, "gpu-feature-discovery").spec.template.spec.containers[0]!.image, `r.example.com/gfd@sha256:${"a".repeat(64)}`);
  assert.equal(ds({ toolkit: { image: "r.example.com/tk:1" } }, "nvidia-container-toolkit-daemonset").spec.template.spec.containers[0]!.image, "r.example.com/tk:1");
  const v = ds({ validator: { repository: "r.example.com", image: "val", version: "v1" } }, "nvidia-device-plugin-daemonset");
  assert.equal(v.spec.template.spec.initContainers?.[0]?.image, "r.example.com/val:v1", "validation inits use the validator's image");
});

test("a partial image or a wrong type is a UserError naming the field", () => {
  assert.throws(() => render({ toolkit: { repository: "r.example.com", version: "v1" } }), (e: unknown) => e instanceof UserError && /spec\.toolkit.*add image/.test(e.message));
  assert.throws(() => render({ gfd: { enabled: "yes" } }), (e: unknown) => e instanceof UserError && /spec\.gfd\.enabled must be a boolean/.test(e.message));
  assert.throws(() => render({ dcgmExporter: { env: [{ name: "A", value: 1 }] } }), (e: unknown) => e instanceof UserError && /spec\.dcgmExporter\.env/.test(e.message));
});

test("disabled operands are not rendered; the validator cannot be turned off; MIG manager is reported unsupported", () => {
  const r = render({ gfd: { enabled: false }, dcgmExporter: { enabled: false }, validator: { enabled: false }, migManager: { enabled: true } });
  assert.deepEqual(r.disabled, ["gfd", "dcgmExporter"]);
  assert.equal(r.services.length, 0);
  assert.ok(r.daemonSets.some((d) => d.metadata.name === "nvidia-operator-validator"));
  assert.deepEqual(r.unsupported, ["migManager"]);
});

test("rendering is deterministic: equal inputs give equal objects and hashes", () => {
  const a = render({ devicePlugin: { env: [{ name: "B", value: "1" }] } });
  const b = render({ devicePlugin: { env: [{ name: "B", value: "1" }] } });
  assert.deepEqual(a, b);
  assert.notEqual(a.daemonSets[0]!.metadata.annotations[OPERAND_HASH_ANNOTATION], render({ toolkit: { env: [{ name: "X", value: "2" }] } }).daemonSets[0]!.metadata.annotations[OPERAND_HASH_ANNOTATION]);
});

test("the cluster's runtime: containerd wins, docker, cri-o", () => {
  assert.equal(clusterRuntime(["docker://24", "containerd://2.0"]), "containerd");
  assert.equal(clusterRuntime(["docker://24"]), "docker");
  assert.equal(clusterRuntime(["cri-o://1.30"]), "crio");
  assert.equal(clusterRuntime([]), "containerd");
});

const ALL = new Set<OperandKey>(["toolkit", "devicePlugin", "gfd", "dcgmExporter", "validator"]);
const gpuNode = (name: string, labels: Record<string, string> = {}) => ({ metadata: { name, labels: { "feature.node.kubernetes.io/pci-10de.present": "true", "feature.node.kubernetes.io/kernel-version.full": "5.15.0-69-generic", "feature.node.kubernetes.io/system-os_release.ID": "ubuntu", "feature.node.kubernetes.io/system-os_release.VERSION_ID": "22.04", ...labels } } });
const ready = (entries: [OperandKey | "driver", string[]][]): ReadyPods => new Map(entries.map(([k, v]) => [k, new Set(v)]));
/** Pods as the planner sees them: Ready operands and drivers (uid `d-<node>` unless given), and operand pods still present. */
const podsOf = (entries: [OperandKey | "driver", string[]][], more: { present?: [OperandKey, string[]][]; drivers?: [string, { uid: string; ready: boolean }[]][] } = {}): OperandPods => {
  const r = ready(entries);
  const drivers = new Map<string, { uid: string; ready: boolean }[]>([...(r.get("driver") ?? [])].map((n) => [n, [{ uid: `d-${n}`, ready: true }]]));
  for (const [n, list] of more.drivers ?? []) drivers.set(n, list);
  const present = new Map<OperandKey, Set<string>>();
  for (const [k, nodes] of [...entries.filter((e): e is [OperandKey, string[]] => e[0] !== "driver"), ...(more.present ?? [])]) for (const n of nodes) (present.get(k) ?? present.set(k, new Set()).get(k)!).add(n);
  return { ready: r, present, drivers };
};
/** The label part of the node patch, as the tests before driver changes were written. */
const operandNodeLabels = (node: Parameters<typeof operandNodePatch>[0], enabled: ReadonlySet<OperandKey>, driverEnabled: boolean, r: ReadyPods) =>
  operandNodePatch(node, enabled, driverEnabled, podsOf([...r].map(([k, v]) => [k, [...v]] as [OperandKey | "driver", string[]]))).labels;

test("deploy labels added when absent, kept when set; gates closed until the prerequisite is ready", () => {
  const p = operandNodeLabels(gpuNode("n1", { "nvidia.com/gpu.deploy.gpu-feature-discovery": "false" }), ALL, true, ready([]));
  assert.equal(p["nvidia.com/gpu.deploy.container-toolkit"], "true");
  assert.equal(p["nvidia.com/gpu.deploy.device-plugin"], "true");
  assert.equal("nvidia.com/gpu.deploy.gpu-feature-discovery" in p, false);
  assert.equal(Object.keys(p).some((k) => k.startsWith("gpuop.nvidia.com/gate.")), false);
  assert.deepEqual(operandNodeLabels({ metadata: { name: "cpu", labels: {} } }, ALL, true, ready([])), {});
});

test("order: driver ready opens the toolkit; toolkit ready opens the device plugin, GFD, exporter and validator", () => {
  const deployed = Object.fromEntries(["container-toolkit", "device-plugin", "gpu-feature-discovery", "dcgm-exporter", "operator-validator"].map((k) => [`nvidia.com/gpu.deploy.${k}`, "true"]));
  const n = gpuNode("n1", { ...deployed, "nvidia.com/gpu.deploy.driver": "true" });
  assert.deepEqual(operandNodeLabels(n, ALL, true, ready([["driver", ["n2"]]])), {}, "a driver ready on another node opens nothing here");
  assert.deepEqual(operandNodeLabels(n, ALL, true, ready([["driver", ["n1"]]])), { "gpuop.nvidia.com/gate.container-toolkit": GATE_OPEN });
  const withToolkit = gpuNode("n1", { ...deployed, "nvidia.com/gpu.deploy.driver": "true", "gpuop.nvidia.com/gate.container-toolkit": "open" });
  assert.deepEqual(Object.keys(operandNodeLabels(withToolkit, ALL, true, ready([["driver", ["n1"]], ["toolkit", ["n1"]]]))).sort(), [
    "gpuop.nvidia.com/gate.dcgm-exporter", "gpuop.nvidia.com/gate.device-plugin", "gpuop.nvidia.com/gate.gpu-feature-discovery", "gpuop.nvidia.com/gate.operator-validator",
  ]);
  // A driver pod that is not Ready (a container restart) closes nothing: the pods' validation inits wait.
  assert.deepEqual(operandNodePatch(withToolkit, ALL, true, podsOf([], { drivers: [["n1", [{ uid: "d-n1", ready: false }]]] })), { labels: {}, annotations: {} });
  // Toolkit off: the device plugin waits for the driver instead.
  const noToolkit = new Set<OperandKey>(["devicePlugin", "validator"]);
  assert.deepEqual(Object.keys(operandNodeLabels(n, noToolkit, true, ready([["driver", ["n1"]]]))).sort(), ["gpuop.nvidia.com/gate.device-plugin", "gpuop.nvidia.com/gate.operator-validator"]);
});

const GATES = ["container-toolkit", "device-plugin", "gpu-feature-discovery", "dcgm-exporter", "operator-validator"].map((k) => `gpuop.nvidia.com/gate.${k}`);
const DEPLOYED = Object.fromEntries(["container-toolkit", "device-plugin", "gpu-feature-discovery", "dcgm-exporter", "operator-validator"].map((k) => [`nvidia.com/gpu.deploy.${k}`, "true"]));
const ALL_OPEN = Object.fromEntries(GATES.map((g) => [g, "open"]));
const RUNNING: [OperandKey | "driver", string[]][] = [["driver", ["n1"]], ["toolkit", ["n1"]], ["devicePlugin", ["n1"]], ["gfd", ["n1"]], ["dcgmExporter", ["n1"]], ["validator", ["n1"]]];
const withAnnotations = (node: ReturnType<typeof gpuNode>, annotations: Record<string, string>) => ({ metadata: { ...node.metadata, annotations } });
const closeAll = Object.fromEntries(GATES.map((g) => [g, null]));

test("opening the toolkit's gate records the driver pod it starts against, in the same patch", () => {
  const n = gpuNode("n1", { ...DEPLOYED, "nvidia.com/gpu.deploy.driver": "true" });
  assert.deepEqual(operandNodePatch(n, ALL, true, podsOf([["driver", ["n1"]]])), { labels: { "gpuop.nvidia.com/gate.container-toolkit": "open" }, annotations: { "gpuop.nvidia.com/operands-driver-pod": "d-n1" } });
  // Toolkit off: the first operand after the driver records it.
  assert.deepEqual(operandNodePatch(n, new Set<OperandKey>(["devicePlugin", "validator"]), true, podsOf([["driver", ["n1"]]])).annotations, { "gpuop.nvidia.com/operands-driver-pod": "d-n1" });
  // A host driver: nothing to record.
  assert.deepEqual(operandNodePatch(n, ALL, false, podsOf([])).annotations, {});
});

test("a steady node with its operands running changes nothing, whatever its upgrade state outside the driver restart", () => {
  for (const state of [undefined, "upgrade-required", "cordon-required", "wait-for-jobs-required", "validation-required", "uncordon-required", "upgrade-done", "upgrade-failed"]) {
    const n = withAnnotations(gpuNode("n1", { ...DEPLOYED, ...ALL_OPEN, ...(state ? { "nvidia.com/gpu-driver-upgrade-state": state } : {}) }), { "gpuop.nvidia.com/operands-driver-pod": "d-n1" });
    assert.deepEqual(operandNodePatch(n, ALL, true, podsOf(RUNNING)), { labels: {}, annotations: {} }, String(state));
  }
});

test("driver upgrade: the operands stop before the driver restarts and come back in order against the new driver", () => {
  const at = (state: string, gates: Record<string, string>) => withAnnotations(gpuNode("n1", { ...DEPLOYED, ...gates, "nvidia.com/gpu-driver-upgrade-state": state }), { "gpuop.nvidia.com/operands-driver-pod": "old" });
  const old = { drivers: [["n1", [{ uid: "old", ready: true }]]] as [string, { uid: string; ready: boolean }[]][] };
  // Every step that takes the driver away closes every gate, once.
  for (const state of ["pod-deletion-required", "drain-required", "pod-restart-required"]) {
    assert.deepEqual(operandNodePatch(at(state, ALL_OPEN), ALL, true, podsOf(RUNNING.slice(1), old)), { labels: closeAll, annotations: {}, driverChange: `the driver upgrade takes the driver away (${state})` }, state);
    assert.deepEqual(operandNodePatch(at(state, {}), ALL, true, podsOf([], old)), { labels: {}, annotations: {} }, `${state}: nothing opens while the driver is being taken away`);
  }
  // validation-required: the old driver pod (still Ready in a cache) does not count; a pod of the old toolkit still leaving holds its gate.
  assert.deepEqual(operandNodePatch(at("validation-required", {}), ALL, true, podsOf([], old)).labels, {});
  const both = { drivers: [["n1", [{ uid: "old", ready: true }, { uid: "new", ready: true }]]] as [string, { uid: string; ready: boolean }[]][] };
  assert.deepEqual(operandNodePatch(at("validation-required", {}), ALL, true, podsOf([], { ...both, present: [["toolkit", ["n1"]]] })).labels, {});
  assert.deepEqual(operandNodePatch(at("validation-required", {}), ALL, true, podsOf([], both)), { labels: { "gpuop.nvidia.com/gate.container-toolkit": "open" }, annotations: { "gpuop.nvidia.com/operands-driver-pod": "new" } });
  // The others wait for the new toolkit pod: an old one still Ready while its gate is closed does not count.
  const newDriver = { drivers: [["n1", [{ uid: "new", ready: true }]]] as [string, { uid: string; ready: boolean }[]][] };
  const tkOpen = withAnnotations(gpuNode("n1", { ...DEPLOYED, "gpuop.nvidia.com/gate.container-toolkit": "open", "nvidia.com/gpu-driver-upgrade-state": "validation-required" }), { "gpuop.nvidia.com/operands-driver-pod": "new" });
  assert.deepEqual(operandNodePatch(tkOpen, ALL, true, podsOf([], newDriver)).labels, {});
  assert.deepEqual(Object.keys(operandNodePatch(tkOpen, ALL, true, podsOf([["toolkit", ["n1"]]], newDriver)).labels).sort(), GATES.slice(1).sort());
  const tkClosed = withAnnotations(gpuNode("n1", { ...DEPLOYED, "nvidia.com/gpu-driver-upgrade-state": "validation-required" }), { "gpuop.nvidia.com/operands-driver-pod": "old" });
  assert.deepEqual(operandNodePatch(tkClosed, new Set<OperandKey>(["toolkit", "devicePlugin"]), true, podsOf([["toolkit", ["n1"]]], { drivers: [] })).labels, {});
});

test("the driver pod the operands run against goes (a pool move, a fallback, a deletion): every gate closes; they reopen against the new one", () => {
  const n = withAnnotations(gpuNode("n1", { ...DEPLOYED, ...ALL_OPEN }), { "gpuop.nvidia.com/operands-driver-pod": "old" });
  assert.deepEqual(operandNodePatch(n, ALL, true, podsOf(RUNNING.slice(1), { drivers: [["n1", [{ uid: "new", ready: true }]]] })), { labels: closeAll, annotations: {}, driverChange: "the driver pod the operands ran against is gone" });
  assert.deepEqual(operandNodePatch(n, ALL, true, podsOf(RUNNING.slice(1), { drivers: [] })).labels, closeAll, "no driver pod at all");
  // Still there beside a new one (a move in progress): nothing yet.
  assert.deepEqual(operandNodePatch(n, ALL, true, podsOf(RUNNING.slice(1), { drivers: [["n1", [{ uid: "old", ready: true }, { uid: "new", ready: false }]]] })).labels, {});
  // Closed, old pods gone: the toolkit opens against the new driver.
  const closed = withAnnotations(gpuNode("n1", DEPLOYED), { "gpuop.nvidia.com/operands-driver-pod": "old" });
  assert.deepEqual(operandNodePatch(closed, ALL, true, podsOf([], { drivers: [["n1", [{ uid: "new", ready: true }]]] })), { labels: { "gpuop.nvidia.com/gate.container-toolkit": "open" }, annotations: { "gpuop.nvidia.com/operands-driver-pod": "new" } });
  // A node whose gates opened before gpuop recorded the driver (an older gpuop): nothing to compare, nothing closes.
  assert.deepEqual(operandNodePatch(gpuNode("n1", { ...DEPLOYED, ...ALL_OPEN }), ALL, true, podsOf(RUNNING.slice(1), { drivers: [["n1", [{ uid: "other", ready: true }]]] })).labels, {});
  // A host driver (pre-installed): gpuop's upgrade states and driver pods do not concern its operands.
  const host = withAnnotations(gpuNode("n1", { ...DEPLOYED, ...ALL_OPEN, "nvidia.com/gpu.deploy.driver": "pre-installed", "nvidia.com/gpu-driver-upgrade-state": "pod-restart-required" }), { "gpuop.nvidia.com/operands-driver-pod": "old" });
  assert.deepEqual(operandNodePatch(host, ALL, true, podsOf(RUNNING.slice(1), { drivers: [] })).labels, {});
});

test("operandPods: Ready and present pods by operand and node, live driver pods with their uid", () => {
  const pod = (app: string, node: string, isReady: boolean, uid: string, deleting = false) => ({ metadata: { uid, labels: { app }, ...(deleting ? { deletionTimestamp: "x" } : {}) }, spec: { nodeName: node }, status: { conditions: [{ type: "Ready", status: isReady ? "True" : "False" }] } });
  const p = operandPods([pod("nvidia-driver-daemonset", "a", true, "d1"), pod("nvidia-driver-daemonset", "a", true, "d0", true), pod("nvidia-driver-daemonset", "b", false, "d2"), pod("nvidia-container-toolkit-daemonset", "a", true, "t1", true), pod("other", "a", true, "o")]);
  assert.deepEqual(p.drivers.get("a"), [{ uid: "d1", ready: true }]);
  assert.deepEqual(p.drivers.get("b"), [{ uid: "d2", ready: false }]);
  assert.deepEqual([...(p.present.get("toolkit") ?? [])], ["a"]);
  assert.equal(p.ready.get("toolkit"), undefined);
});

test("driver.enabled false or a pre-installed driver: the toolkit may go at once", () => {
  assert.equal(operandNodeLabels(gpuNode("n1"), ALL, false, ready([]))["gpuop.nvidia.com/gate.container-toolkit"], GATE_OPEN);
  assert.equal(operandNodeLabels(gpuNode("n1", { "nvidia.com/gpu.deploy.driver": "pre-installed" }), ALL, true, ready([]))["gpuop.nvidia.com/gate.container-toolkit"], GATE_OPEN);
  assert.equal(operandNodeLabels(gpuNode("n1", { "nvidia.com/gpu.deploy.driver": "true" }), ALL, true, ready([]))["gpuop.nvidia.com/gate.container-toolkit"], undefined);
});

test("operands=false removes true deploy labels and gates; a disabled operand's gate is closed", () => {
  const n = gpuNode("n1", { "nvidia.com/gpu.deploy.operands": "false", "nvidia.com/gpu.deploy.device-plugin": "true", "nvidia.com/gpu.deploy.gpu-feature-discovery": "false", "gpuop.nvidia.com/gate.device-plugin": "open" });
  const p = operandNodeLabels(n, ALL, true, ready([["driver", ["n1"]]]));
  assert.equal(p["nvidia.com/gpu.deploy.device-plugin"], null);
  assert.equal(p["gpuop.nvidia.com/gate.device-plugin"], null);
  assert.equal("nvidia.com/gpu.deploy.gpu-feature-discovery" in p, false);
  const off = operandNodeLabels(gpuNode("n2", { "nvidia.com/gpu.deploy.gpu-feature-discovery": "true", "gpuop.nvidia.com/gate.gpu-feature-discovery": "open" }), new Set(["toolkit"]), true, ready([]));
  assert.equal(off["gpuop.nvidia.com/gate.gpu-feature-discovery"], null);
});

test("readyPods: Ready pods by operand and node, terminating ones left out", () => {
  const pod = (app: string, node: string, isReady: boolean, deleting = false) => ({ metadata: { labels: { app }, ...(deleting ? { deletionTimestamp: "x" } : {}) }, spec: { nodeName: node }, status: { conditions: [{ type: "Ready", status: isReady ? "True" : "False" }] } });
  const r = readyPods([pod("nvidia-driver-daemonset", "a", true), pod("nvidia-device-plugin-daemonset", "a", false), pod("nvidia-device-plugin-daemonset", "b", true), pod("nvidia-container-toolkit-daemonset", "c", true, true), pod("other", "a", true)]);
  assert.deepEqual([...(r.get("driver") ?? [])], ["a"]);
  assert.deepEqual([...(r.get("devicePlugin") ?? [])], ["b"]);
  assert.equal(r.get("toolkit"), undefined);
});

test("status: ready only when every node meant to run an enabled operand has its Ready pod", () => {
  const nodes = [gpuNode("a", { "gpuop.nvidia.com/gate.container-toolkit": "open" }), gpuNode("b"), gpuNode("c", { "nvidia.com/gpu.deploy.container-toolkit": "false" })];
  const s = operandStatuses({ policy: policy({ gfd: { enabled: false }, sandboxWorkloads: { enabled: true } }), nodes, ready: ready([["toolkit", ["a"]]]) });
  const tk = s.find((o) => o.name === "toolkit")!;
  assert.deepEqual(tk, { name: "toolkit", daemonSet: "nvidia-container-toolkit-daemonset", state: "notReady", nodes: 2, readyPods: 1, waiting: ["b"] });
  assert.equal(s.find((o) => o.name === "gfd")!.state, "disabled");
  assert.equal(s.find((o) => o.name === "sandboxWorkloads")!.state, "unsupported");
  const allReady = operandStatuses({ policy: policy(), nodes: [gpuNode("a", Object.fromEntries(["container-toolkit", "device-plugin", "gpu-feature-discovery", "dcgm-exporter", "operator-validator"].map((k) => [`gpuop.nvidia.com/gate.${k}`, "open"])))], ready: ready([["toolkit", ["a"]], ["devicePlugin", ["a"]], ["gfd", ["a"]], ["dcgmExporter", ["a"]], ["validator", ["a"]]]) });
  assert.deepEqual(allReady.map((o) => o.state), ["ready", "ready", "ready", "ready", "ready"]);
  const err = operandStatuses({ policy: policy(), nodes: [], ready: ready([]), error: "spec.toolkit sets only some" });
  assert.equal(err[0]!.state, "error");
});

test("gpuop status rows: per node and operand, ready, starting, waiting, off, disabled", async () => {
  const { operandNodeRows } = await import("./report.ts");
  const pod = (app: string, node: string, isReady: boolean) => ({ metadata: { labels: { app } }, spec: { nodeName: node }, status: { conditions: [{ type: "Ready", status: isReady ? "True" : "False" }] } });
  const rows = operandNodeRows(
    [gpuNode("b", { "nvidia.com/gpu.deploy.device-plugin": "false" }), gpuNode("a", { "gpuop.nvidia.com/gate.device-plugin": "open" }), { metadata: { name: "cpu" } }],
    [pod("nvidia-container-toolkit-daemonset", "a", true), pod("nvidia-container-toolkit-daemonset", "b", false)],
    new Set(["gfd"]),
  );
  assert.deepEqual(rows.map((r) => r.node), ["a", "b"]);
  assert.deepEqual(rows[0]!.operands, { toolkit: "ready", validator: "waiting", devicePlugin: "starting", gfd: "disabled", dcgmExporter: "waiting" });
  assert.deepEqual(rows[1]!.operands, { toolkit: "starting", validator: "waiting", devicePlugin: "off", gfd: "disabled", dcgmExporter: "waiting" });
});

test("spec.daemonsets: priority class, tolerations (replacing the default), labels, annotations, update strategy", () => {
  const d = ds({ daemonsets: { priorityClassName: "gpu-critical", tolerations: [{ key: "dedicated", operator: "Equal", value: "gpu", effect: "NoExecute" }], labels: { team: "ml", app: "not-this" }, annotations: { note: "x" }, rollingUpdate: { maxUnavailable: "3" } } }, "nvidia-device-plugin-daemonset");
  const pod = d.spec.template.spec;
  assert.equal(pod.priorityClassName, "gpu-critical");
  assert.deepEqual(pod.tolerations, [{ key: "dedicated", operator: "Equal", value: "gpu", effect: "NoExecute" }]);
  assert.equal(d.metadata.labels["team"], "ml");
  assert.equal(d.spec.template.metadata.labels["app"], "nvidia-device-plugin-daemonset");
  assert.equal(d.metadata.annotations["note"], "x");
  assert.deepEqual(d.spec.updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 3 } });
  assert.deepEqual(ds({ daemonsets: { updateStrategy: "OnDelete" } }, "gpu-feature-discovery").spec.updateStrategy, { type: "OnDelete" });
  assert.deepEqual(ds({}, "gpu-feature-discovery").spec.updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } });
  assert.throws(() => render({ daemonsets: { rollingUpdate: { maxUnavailable: "one" } } }), (e: unknown) => e instanceof UserError && /maxUnavailable/.test(e.message));
});

test("metrics: nodes per enabled operand by state (ready, starting, waiting); disabled operands have no series", () => {
  const nodes = [gpuNode("a", { "gpuop.nvidia.com/gate.container-toolkit": "open" }), gpuNode("b", { "gpuop.nvidia.com/gate.container-toolkit": "open" }), gpuNode("c"), gpuNode("d", { "nvidia.com/gpu.deploy.container-toolkit": "false" })];
  const series = operandNodeSeries(policy({ gfd: { enabled: false } }), nodes, ready([["toolkit", ["a"]]]));
  const get = (operand: string, state: string) => series.find((x) => x.labels.operand === operand && x.labels.state === state)?.value;
  assert.deepEqual([get("toolkit", "ready"), get("toolkit", "starting"), get("toolkit", "waiting")], [1, 1, 1]);
  assert.deepEqual([get("devicePlugin", "ready"), get("devicePlugin", "starting"), get("devicePlugin", "waiting")], [0, 0, 4]);
  assert.equal(series.some((x) => x.labels.operand === "gfd"), false);
  assert.equal(series.length, 4 * 3);
});

test("events: an operand becoming ready, or no longer ready; none on the first pass or in a steady state", () => {
  const st = (state: string, extra: Record<string, unknown> = {}) => ({ name: "devicePlugin", daemonSet: "nvidia-device-plugin-daemonset", state, nodes: 3, readyPods: state === "ready" ? 3 : 1, ...extra });
  assert.deepEqual(operandTransitions(undefined, [st("ready")]), []);
  assert.deepEqual(operandTransitions([st("ready")], [st("ready")]), []);
  assert.deepEqual(operandTransitions([st("notReady")], [st("ready")]), [{ type: "Normal", reason: "OperandReady", message: "devicePlugin (nvidia-device-plugin-daemonset) is Ready on all 3 of its nodes" }]);
  assert.deepEqual(operandTransitions([st("ready")], [st("notReady", { notReady: ["b"], waiting: ["c"] })]), [{ type: "Warning", reason: "OperandNotReady", message: "devicePlugin (nvidia-device-plugin-daemonset): 1/3 nodes ready; not ready on b, c" }]);
  assert.deepEqual(operandTransitions([st("notReady")], [st("disabled")]), []);
});

test("devicePlugin.config: NVIDIA's config-manager init and sidecar, CONFIG_FILE, the ConfigMap and a shared emptyDir, for the device plugin and GFD", () => {
  const spec = { devicePlugin: { repository: "r.example.com/nv", image: "k8s-device-plugin", version: "v0.20.1", imagePullPolicy: "Always", resources: { requests: { cpu: "50m" } }, config: { name: "time-slicing", default: "any" } }, gfd: { resources: { requests: { cpu: "20m" } } } };
  for (const [name, main, process, cpu] of [["nvidia-device-plugin-daemonset", "nvidia-device-plugin", "nvidia-device-plugin", "50m"], ["gpu-feature-discovery", "gpu-feature-discovery", "gpu-feature-discovery", "20m"]] as const) {
    const pod = ds(spec, name).spec.template.spec;
    assert.deepEqual(pod.initContainers?.map((c) => c.name), ["toolkit-validation", "config-manager-init"], name);
    assert.deepEqual(pod.containers.map((c) => c.name), [main, "config-manager"], name);
    assert.equal(pod.shareProcessNamespace, true);
    const init = pod.initContainers![1]!;
    const sidecar = pod.containers[1]!;
    for (const c of [init, sidecar]) {
      assert.equal(c.image, "r.example.com/nv/k8s-device-plugin:v0.20.1", "the device plugin's image");
      assert.equal(c.imagePullPolicy, "Always");
      assert.deepEqual(c.command, ["config-manager"]);
      assert.deepEqual(c.volumeMounts, [{ name: "config", mountPath: "/config" }, { name: "time-slicing", mountPath: "/available-configs" }]);
      const env = envOf(c);
      assert.equal(env.NODE_LABEL, "nvidia.com/device-plugin.config");
      assert.equal(env.CONFIG_FILE_SRCDIR, "/available-configs");
      assert.equal(env.CONFIG_FILE_DST, "/config/config.yaml");
      assert.equal(env.DEFAULT_CONFIG, "any");
      assert.equal(env.FALLBACK_STRATEGIES, "empty");
      assert.deepEqual(c.env?.find((e) => e.name === "NODE_NAME")?.valueFrom, { fieldRef: { fieldPath: "spec.nodeName" } });
    }
    assert.deepEqual([envOf(init).ONESHOT, envOf(init).SEND_SIGNAL, envOf(sidecar).ONESHOT, envOf(sidecar).SEND_SIGNAL, envOf(sidecar).SIGNAL, envOf(sidecar).PROCESS_TO_SIGNAL], ["true", "false", "false", "true", "1", process]);
    assert.deepEqual(init.resources, { requests: { cpu } }, "the init takes the operand's resources");
    assert.equal(envOf(pod.containers[0]).CONFIG_FILE, "/config/config.yaml");
    assert.deepEqual(pod.containers[0]!.volumeMounts?.slice(-2), [{ name: "config", mountPath: "/config" }, { name: "time-slicing", mountPath: "/available-configs" }]);
    assert.deepEqual(pod.volumes.slice(-2), [{ name: "time-slicing", configMap: { name: "time-slicing" } }, { name: "config", emptyDir: {} }]);
  }
  // No name: nothing of it.
  const plain = ds({ devicePlugin: { config: { default: "any" } } }, "nvidia-device-plugin-daemonset").spec.template.spec;
  assert.deepEqual(plain.containers.map((c) => c.name), ["nvidia-device-plugin"]);
  assert.equal(plain.shareProcessNamespace, undefined);
  assert.equal(envOf(plain.containers[0]).CONFIG_FILE, undefined);
  assert.throws(() => render({ devicePlugin: { config: { name: "Time.Slicing" } } }), (e: unknown) => e instanceof UserError && /spec\.devicePlugin\.config\.name "Time\.Slicing" must be a ConfigMap name/.test(e.message));
  assert.throws(() => render({ devicePlugin: { config: "time-slicing" } }), (e: unknown) => e instanceof UserError && /spec\.devicePlugin\.config must be an object/.test(e.message));
});

test("dcgmExporter.config: the ConfigMap's dcgm-metrics.csv replaces the collectors; the Service's internalTrafficPolicy", () => {
  const d = ds({ dcgmExporter: { config: { name: "custom-metrics" } } }, "nvidia-dcgm-exporter").spec.template.spec;
  assert.equal(envOf(d.containers[0]).DCGM_EXPORTER_COLLECTORS, "/etc/dcgm-exporter/dcgm-metrics.csv");
  assert.deepEqual(d.containers[0]!.volumeMounts?.at(-1), { name: "metrics-config", mountPath: "/etc/dcgm-exporter/dcgm-metrics.csv", subPath: "dcgm-metrics.csv", readOnly: true });
  assert.deepEqual(d.volumes.at(-1), { name: "metrics-config", configMap: { name: "custom-metrics", items: [{ key: "dcgm-metrics.csv", path: "dcgm-metrics.csv" }] } });
  assert.equal(envOf(ds({}, "nvidia-dcgm-exporter").spec.template.spec.containers[0]).DCGM_EXPORTER_COLLECTORS, "/etc/dcgm-exporter/dcp-metrics-included.csv");
  assert.equal(render({ dcgmExporter: { service: { internalTrafficPolicy: "Local", type: "NodePort" } } }).services[0]!.spec.internalTrafficPolicy, "Local");
  assert.equal(render({ dcgmExporter: { service: { type: "NodePort" } } }).services[0]!.spec.type, "NodePort");
  assert.throws(() => render({ dcgmExporter: { service: { internalTrafficPolicy: "local" } } }), (e: unknown) => e instanceof UserError && /internalTrafficPolicy must be Cluster or Local/.test(e.message));
});

test("validator.<component>.env and validator.resources reach every operand's validation init of that component", () => {
  const spec = { validator: { resources: { limits: { memory: "100Mi" } }, driver: { env: [{ name: "DISABLE_DEV_CHAR_SYMLINK_CREATION", value: "true" }] }, toolkit: { env: [{ name: "T", value: "1" }] }, plugin: { env: [{ name: "WITH_WORKLOAD", value: "true" }] } } };
  const tk = ds(spec, "nvidia-container-toolkit-daemonset").spec.template.spec.initContainers![0]!;
  assert.equal(envOf(tk).DISABLE_DEV_CHAR_SYMLINK_CREATION, "true");
  assert.deepEqual(tk.resources, { limits: { memory: "100Mi" } });
  const dp = ds(spec, "nvidia-device-plugin-daemonset").spec.template.spec.initContainers![0]!;
  assert.deepEqual([envOf(dp).T, envOf(dp).DISABLE_DEV_CHAR_SYMLINK_CREATION], ["1", undefined]);
  const inits = Object.fromEntries(ds(spec, "nvidia-operator-validator").spec.template.spec.initContainers!.map((c) => [c.name, c]));
  assert.equal(envOf(inits["plugin-validation"]).WITH_WORKLOAD, "true", "replaces gpuop's default");
  assert.equal(inits["plugin-validation"]!.env!.filter((e) => e.name === "WITH_WORKLOAD").length, 1);
  assert.equal(envOf(inits["cuda-validation"]).WITH_WORKLOAD, undefined);
  assert.deepEqual(inits["cuda-validation"]!.resources, { limits: { memory: "100Mi" } });
  assert.throws(() => render({ validator: { cuda: { env: "x" } } }), (e: unknown) => e instanceof UserError && /spec\.validator\.cuda\.env/.test(e.message));
});

test("args, env, resources, pull policy and secrets per operand, on each operand's main container", () => {
  for (const [key, name] of [["toolkit", "nvidia-container-toolkit-daemonset"], ["devicePlugin", "nvidia-device-plugin-daemonset"], ["gfd", "gpu-feature-discovery"], ["dcgmExporter", "nvidia-dcgm-exporter"], ["validator", "nvidia-operator-validator"]] as const) {
    const d = ds({ [key]: { env: [{ name: "OWN", value: key }], resources: { requests: { memory: "64Mi" } }, imagePullPolicy: "Never", imagePullSecrets: ["s1", "s1", "s2"], args: ["--flag-x"] } }, name);
    const c = d.spec.template.spec.containers[0]!;
    assert.equal(envOf(c).OWN, key, name);
    assert.deepEqual(c.resources, { requests: { memory: "64Mi" } }, name);
    assert.equal(c.imagePullPolicy, "Never", name);
    assert.deepEqual(d.spec.template.spec.imagePullSecrets, [{ name: "s1" }, { name: "s2" }], name);
    if (key !== "validator") assert.ok([...(c.args ?? []), ...(c.command ?? [])].join(" ").includes("--flag-x"), name);
  }
});

test("a prerequisite kept off a node by its deploy label is the host's: the operands after it wait for the one before", () => {
  const n = gpuNode("n1", { ...DEPLOYED, "nvidia.com/gpu.deploy.container-toolkit": "false", "nvidia.com/gpu.deploy.driver": "true" });
  const p = operandNodePatch(n, ALL, true, podsOf([["driver", ["n1"]]]));
  assert.deepEqual(Object.keys(p.labels).sort(), GATES.slice(1).sort());
  assert.deepEqual(p.annotations, { "gpuop.nvidia.com/operands-driver-pod": "d-n1" });
  assert.deepEqual(operandNodePatch(n, ALL, true, podsOf([])).labels, {}, "still after the driver");
  const paused = gpuNode("n1", { ...DEPLOYED, "nvidia.com/gpu.deploy.container-toolkit": "paused-for-driver-upgrade" });
  assert.deepEqual(operandNodePatch(paused, ALL, true, podsOf([["driver", ["n1"]]])).labels, {}, "paused by NVIDIA's driver manager: not the host's");
});
