import { test } from "node:test";
import assert from "node:assert/strict";
import { UserError } from "../errors.ts";
import {
  commonDaemonSetSpec,
  enabledOperands,
  EnvBuilder,
  GATE_OPEN,
  hostPath,
  objectHash,
  OPERAND_HASH_ANNOTATION,
  operandNodePatch,
  operandNodeSeriesFromSplit,
  OperandTally,
  type OperandNodeStates,
  operandPods,
  operandTransitions,
  OPERANDS,
  operandEnabled,
  operandImage,
  operandSpec,
  prerequisite,
  resources,
  UNSUPPORTED_COMPONENTS,
  operandStatusesFromSplit,
  nodeOperandStates,
  readyPods,
  type OperandPods,
  renderOperands,
  type OperandKey,
  type ReadyPods,
  validatorExpected,
  OPERANDS_DRIVER_ANNOTATION,
} from "./index.ts";
import { clusterRuntime } from "./toolkit.ts";
import { operandNodeRows } from "./report.ts";
import { normalizePolicy, type ClusterPolicy } from "../policy.ts";
import { classifyNodes } from "../gpu-node.ts";

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


// The whole cluster worked out from its nodes in one go, as the operand controller's tally must
// add up to (the controller builds the same split node by node).
function operandSplit(enabled: ReadonlySet<OperandKey>, nodes: Iterable<{ name: string; states: OperandNodeStates }>) {
  const tally = new OperandTally();
  for (const { name, states } of nodes) tally.set(name, states);
  return tally.split(enabled);
}
function operandNodeSplit(p: ClusterPolicy, nodes: readonly ReturnType<typeof gpuNode>[], r: ReadyPods) {
  const { gpuNodes } = classifyNodes(nodes);
  const labelsOf = new Map(nodes.map((n) => [n.metadata.name, n.metadata.labels as Record<string, string>]));
  const normalized = normalizePolicy(p);
  const enabled = new Set(OPERANDS.filter((o) => operandEnabled(normalized, o)).map((o) => o.key));
  return operandSplit(enabled, gpuNodes.map((n) => ({ name: n.name, states: nodeOperandStates(labelsOf.get(n.name) ?? {}, enabled, (key) => r.get(key)?.has(n.name) ?? false) })));
}
const operandStatuses = (input: { policy: ClusterPolicy; nodes: readonly ReturnType<typeof gpuNode>[]; ready: ReadyPods; error?: string }) =>
  input.error !== undefined ? operandStatusesFromSplit(input.policy, [], input.error) : operandStatusesFromSplit(input.policy, operandNodeSplit(input.policy, input.nodes, input.ready));
const operandNodeSeries = (p: ClusterPolicy, nodes: readonly ReturnType<typeof gpuNode>[], r: ReadyPods) => operandNodeSeriesFromSplit(operandNodeSplit(p, nodes, r));

test("deploy labels are not written here (the driver controller's GPU-label patch carries them); gates closed until the prerequisite is ready", () => {
  const p = operandNodeLabels(gpuNode("n1", { "nvidia.com/gpu.deploy.gpu-feature-discovery": "false" }), ALL, true, ready([]));
  assert.deepEqual(p, {});
  assert.deepEqual(operandNodeLabels({ metadata: { name: "cpu", labels: {} } }, ALL, true, ready([])), {});
  // A deploy label not written yet counts as the true the driver controller writes: the toolkit's
  // gate opens (its DaemonSet also selects the deploy label, so no pod starts before that label);
  // one set to false by an admin keeps the operand's gate shut.
  const driverPre = { "nvidia.com/gpu.deploy.driver": "pre-installed" };
  assert.deepEqual(operandNodeLabels(gpuNode("n1", driverPre), ALL, true, ready([])), { "gpuop.nvidia.com/gate.container-toolkit": GATE_OPEN });
  assert.deepEqual(operandNodeLabels(gpuNode("n1", { ...driverPre, "nvidia.com/gpu.deploy.container-toolkit": "false", "nvidia.com/gpu.deploy.device-plugin": "false" }), new Set<OperandKey>(["toolkit", "devicePlugin"]), true, ready([])), {});
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

test("operands=false closes the gates; a disabled operand's gate is closed", () => {
  const n = gpuNode("n1", { "nvidia.com/gpu.deploy.operands": "false", "nvidia.com/gpu.deploy.device-plugin": "true", "nvidia.com/gpu.deploy.gpu-feature-discovery": "false", "gpuop.nvidia.com/gate.device-plugin": "open" });
  const p = operandNodeLabels(n, ALL, true, ready([["driver", ["n1"]]]));
  // The deploy label goes in the driver controller's patch (desiredNodeLabels); the gate closes here.
  assert.equal("nvidia.com/gpu.deploy.device-plugin" in p, false);
  assert.equal(p["gpuop.nvidia.com/gate.device-plugin"], null);
  assert.equal("nvidia.com/gpu.deploy.gpu-feature-discovery" in p, false);
  assert.deepEqual(Object.keys(p), ["gpuop.nvidia.com/gate.device-plugin"]);
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

test("nodeOperandStates: per enabled operand a node is meant to run, waiting (gate closed), starting (open, pod not Ready) or ready", () => {
  const on = new Set<OperandKey>(["toolkit", "devicePlugin", "validator"]);
  const labels = { "gpuop.nvidia.com/gate.container-toolkit": "open", "gpuop.nvidia.com/gate.device-plugin": "open", "nvidia.com/gpu.deploy.operator-validator": "false" };
  assert.deepEqual(nodeOperandStates(labels, on, (k) => k === "toolkit"), { toolkit: "ready", devicePlugin: "starting" });
  assert.deepEqual(nodeOperandStates({}, on, () => true), { toolkit: "waiting", devicePlugin: "waiting", validator: "waiting" });
  assert.deepEqual(nodeOperandStates({ "nvidia.com/gpu.deploy.operands": "false", ...labels }, on, () => true), {});
});

test("operandSplit: counts per operand and the waiting and not-ready names sorted, in any node order; the same status as from the nodes", () => {
  const on = new Set<OperandKey>(["toolkit", "validator"]);
  const split = operandSplit(on, [
    { name: "n3", states: { toolkit: "waiting", validator: "waiting" } },
    { name: "n1", states: { toolkit: "starting" } },
    { name: "n2", states: { toolkit: "waiting", validator: "ready" } },
    { name: "n0", states: { toolkit: "ready", gfd: "waiting" } },
  ]);
  const tk = split.find((o) => o.info.key === "toolkit")!;
  assert.deepEqual({ meant: tk.meant, waiting: tk.waiting, notReady: tk.notReady, waitingNames: tk.waitingNames, notReadyNames: tk.notReadyNames }, { meant: 4, waiting: 2, notReady: 1, waitingNames: ["n2", "n3"], notReadyNames: ["n1"] });
  const gfd = split.find((o) => o.info.key === "gfd")!;
  assert.deepEqual({ enabled: gfd.enabled, meant: gfd.meant }, { enabled: false, meant: 0 });
  // Equal to the status worked out from the nodes themselves.
  const pol = policy({ devicePlugin: { enabled: false }, gfd: { enabled: false }, dcgmExporter: { enabled: false } });
  const nodes = [gpuNode("b", { "gpuop.nvidia.com/gate.container-toolkit": "open" }), gpuNode("a"), gpuNode("c", { "gpuop.nvidia.com/gate.container-toolkit": "open" })];
  const r = ready([["toolkit", ["c"]]]);
  const fromNodes = operandStatuses({ policy: pol, nodes, ready: r });
  const views = nodes.map((n) => ({ name: n.metadata.name, states: nodeOperandStates(n.metadata.labels, on, (k) => r.get(k)?.has(n.metadata.name) ?? false) }));
  assert.deepEqual(operandStatusesFromSplit(pol, operandSplit(on, views.reverse())), fromNodes);
  assert.deepEqual(fromNodes.find((o) => o.name === "toolkit"), { name: "toolkit", daemonSet: "nvidia-container-toolkit-daemonset", state: "notReady", nodes: 3, readyPods: 1, waiting: ["a"], notReady: ["b"] });
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
const info = (key: OperandKey) => OPERANDS.find((o) => o.key === key)!;
const userError = (fn: () => unknown, message: string) => assert.throws(fn, (e: unknown) => e instanceof UserError && e.message === message, message);

test("operandSpec: every typed field checked by name, with the value it got", () => {
  const spec = (s: unknown) => operandSpec(policy({ devicePlugin: s }), "devicePlugin");
  assert.deepEqual(operandSpec(policy(), "gfd"), {});
  userError(() => spec("on"), "spec.devicePlugin must be an object");
  userError(() => spec([]), "spec.devicePlugin must be an object");
  userError(() => spec({ enabled: 1 }), "spec.devicePlugin.enabled must be a boolean, not 1");
  for (const f of ["repository", "image", "version", "imagePullPolicy"]) userError(() => spec({ [f]: 2 }), `spec.devicePlugin.${f} must be a string, not 2`);
  for (const f of ["imagePullSecrets", "args"]) {
    userError(() => spec({ [f]: "x" }), `spec.devicePlugin.${f} must be a list of strings, not "x"`);
    userError(() => spec({ [f]: ["a", 3] }), `spec.devicePlugin.${f} must be a list of strings, not ["a",3]`);
  }
  for (const env of [{ name: "A" }, [null], [{ name: "" }], [{ name: 1 }], [{ name: "A", value: 2 }], [{ value: "v" }]]) {
    userError(() => spec({ env }), `spec.devicePlugin.env must be a list of {name, value} with string values, not ${JSON.stringify(env)}`);
  }
  const ok = { enabled: false, repository: "r", image: "i", version: "v", imagePullPolicy: "Always", imagePullSecrets: ["s"], args: ["--a"], env: [{ name: "A" }, { name: "B", value: "" }], other: { kept: true } };
  assert.deepEqual(spec(ok), ok);
});

test("operandEnabled: on unless enabled is false; the validator always on", () => {
  assert.equal(operandEnabled(policy({ gfd: { enabled: false } }), info("gfd")), false);
  assert.equal(operandEnabled(policy({ gfd: { enabled: true } }), info("gfd")), true);
  assert.equal(operandEnabled(policy({ gfd: {} }), info("gfd")), true);
  assert.equal(operandEnabled(policy({ validator: { enabled: false } }), info("validator")), true);
  assert.deepEqual([...enabledOperands(policy({ toolkit: { enabled: false }, dcgmExporter: { enabled: false } }))], ["validator", "devicePlugin", "gfd"]);
});

test("operandImage: default, full reference, the three parts (digest with @, slashes trimmed), and what is missing", () => {
  const dp = info("devicePlugin");
  assert.equal(operandImage({}, dp), "nvcr.io/nvidia/k8s-device-plugin:v0.20.0");
  assert.equal(operandImage({ image: "r.example.com/x/plugin:v1" }, dp), "r.example.com/x/plugin:v1");
  assert.equal(operandImage({ repository: "r.example.com/x//", image: "plugin", version: "v1" }, dp), "r.example.com/x/plugin:v1");
  assert.equal(operandImage({ repository: "r.example.com", image: "plugin", version: `sha256:${"c".repeat(64)}` }, dp), `r.example.com/plugin@sha256:${"c".repeat(64)}`);
  const tail = "(or set image to a full reference, or none of them for nvcr.io/nvidia/k8s-device-plugin:v0.20.0)";
  userError(() => operandImage({ repository: "r.example.com" }, dp), `spec.devicePlugin sets only some of repository, image and version: add image and version ${tail}`);
  userError(() => operandImage({ version: "v1" }, dp), `spec.devicePlugin sets only some of repository, image and version: add repository and image ${tail}`);
  userError(() => operandImage({ image: "plugin", version: "v1" }, dp), `spec.devicePlugin sets only some of repository, image and version: add repository ${tail}`);
  userError(() => operandImage({ repository: "r.example.com", image: "plugin" }, dp), `spec.devicePlugin sets only some of repository, image and version: add version ${tail}`);
  assert.throws(() => operandImage({ image: "Bad Image" }, dp), (e: unknown) => e instanceof UserError && e.message.startsWith("spec.devicePlugin: image Bad Image is not a valid reference: "));
});

test("prerequisite: the operand's own, else the next one up that is on, else the driver", () => {
  assert.equal(prerequisite(info("gfd"), ALL), "toolkit");
  assert.equal(prerequisite(info("gfd"), new Set<OperandKey>(["gfd"])), "driver");
  assert.equal(prerequisite(info("toolkit"), ALL), "driver");
});

test("EnvBuilder: first-set order, later values replace, empty value written without value; resources as strings", () => {
  const env = new EnvBuilder().set("A", "1").set("B", "2").fieldRef("NODE", "spec.nodeName").set("A", "3").setAll([{ name: "C" }, { name: "B", value: "" }]).setAll(undefined);
  assert.deepEqual(env.list(), [{ name: "A", value: "3" }, { name: "B" }, { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }, { name: "C" }]);
  assert.equal(resources(undefined), undefined);
  assert.equal(resources({}), undefined);
  assert.equal(resources({ limits: {}, requests: {} }), undefined);
  assert.deepEqual(resources({ limits: { cpu: 2, memory: "1Gi" }, requests: {} }), { limits: { cpu: "2", memory: "1Gi" } });
  assert.deepEqual(resources({ requests: { cpu: "100m" } }), { requests: { cpu: "100m" } });
  assert.deepEqual(hostPath("v", "/p", "Directory"), { name: "v", hostPath: { path: "/p", type: "Directory" } });
  assert.deepEqual(hostPath("v", "/p"), { name: "v", hostPath: { path: "/p" } });
});

test("spec.daemonsets: each bad value refused by name; percentages and digit strings for maxUnavailable; empty priority class is the default", () => {
  const at = "spec.daemonsets";
  const common = (d: unknown) => commonDaemonSetSpec(policy({ daemonsets: d }));
  userError(() => common("x"), `${at} must be an object`);
  userError(() => common({ labels: { a: 1 } }), `${at}.labels must be a map of strings, not {"a":1}`);
  userError(() => common({ annotations: ["a"] }), `${at}.annotations must be a map of strings, not ["a"]`);
  userError(() => common({ tolerations: {} }), `${at}.tolerations must be a list of tolerations, not {}`);
  userError(() => common({ tolerations: ["x"] }), `${at}.tolerations must be a list of tolerations, not ["x"]`);
  userError(() => common({ priorityClassName: 5 }), `${at}.priorityClassName must be a string`);
  userError(() => common({ updateStrategy: "Recreate" }), `${at}.updateStrategy must be RollingUpdate or OnDelete, not "Recreate"`);
  for (const mu of ["one", "25", "x%", "-1", true]) {
    if (mu === "25") continue;
    userError(() => common({ rollingUpdate: { maxUnavailable: mu } }), `${at}.rollingUpdate.maxUnavailable must be a count or a percentage like "25%", not ${JSON.stringify(mu)}`);
  }
  assert.deepEqual(common({ updateStrategy: "RollingUpdate", rollingUpdate: { maxUnavailable: "30%" } }).updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: "30%" } });
  assert.deepEqual(common({ rollingUpdate: { maxUnavailable: 4 } }).updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 4 } });
  assert.deepEqual(common({ rollingUpdate: "x" }).updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } });
  const plain = common({ priorityClassName: "" });
  assert.deepEqual(plain, { priorityClassName: "system-node-critical", tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }], labels: {}, annotations: {}, updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } } });
  assert.deepEqual(common({ tolerations: [] }).tolerations, [], "an empty list replaces the default too");
});

test("operand DaemonSets: pull secrets deduplicated and empty ones dropped; pod annotations only when set; the hash ignores itself", () => {
  const d = ds({ gfd: { imagePullSecrets: ["a", "", "a", "b"] }, daemonsets: { annotations: { team: "ml" } } }, "gpu-feature-discovery");
  assert.deepEqual(d.spec.template.spec.imagePullSecrets, [{ name: "a" }, { name: "b" }]);
  assert.deepEqual(d.spec.template.metadata.annotations, { team: "ml" });
  assert.equal(d.metadata.annotations["team"], "ml");
  assert.equal("imagePullSecrets" in ds({ gfd: { imagePullSecrets: [""] } }, "gpu-feature-discovery").spec.template.spec, false);
  assert.equal("annotations" in ds({}, "gpu-feature-discovery").spec.template.metadata, false);
  assert.equal(d.metadata.labels["app.kubernetes.io/part-of"], "nvidia-gpu");
  assert.equal(ds({}, "nvidia-operator-validator").metadata.labels["app.kubernetes.io/part-of"], "gpu-operator");
  assert.equal("app.kubernetes.io/part-of" in ds({}, "nvidia-device-plugin-daemonset").metadata.labels, false);
  assert.equal(d.metadata.labels["gpuop.nvidia.com/operand"], "gfd");
  assert.deepEqual(d.metadata.ownerReferences, [{ apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", name: "cluster-policy", uid: "u1", controller: true, blockOwnerDeletion: true }]);
  assert.equal(d.spec.template.spec.serviceAccountName, "nvidia-gpu-feature-discovery");
  const hash = d.metadata.annotations[OPERAND_HASH_ANNOTATION]!;
  assert.match(hash, /^[0-9a-f]{16}$/);
  assert.equal(objectHash(d), hash, "the stored hash is left out of what it hashes");
  assert.notEqual(objectHash({ ...d, metadata: { ...d.metadata, labels: { ...d.metadata.labels, x: "y" } } }), hash);
  assert.notEqual(objectHash({ ...d, metadata: { ...d.metadata, ownerReferences: [] } }), hash);
  const unowned = renderOperands({ policy: policy(), namespace: "gpu-ns" }).daemonSets[0]!;
  assert.equal("ownerReferences" in unowned.metadata, false);
});

test("renderOperands: the validator's pull policy for the validation inits, the runtime class, and what is unsupported", () => {
  const withPolicy = ds({ validator: { imagePullPolicy: "Always" } }, "nvidia-device-plugin-daemonset");
  assert.equal(withPolicy.spec.template.spec.initContainers?.[0]?.imagePullPolicy, "Always");
  assert.equal(ds({}, "nvidia-device-plugin-daemonset").spec.template.spec.initContainers?.[0]?.imagePullPolicy, "IfNotPresent");
  assert.equal(ds({ operator: { runtimeClass: "" } }, "gpu-feature-discovery").spec.template.spec.runtimeClassName, "nvidia");
  assert.equal(ds({ operator: { runtimeClass: 3 } }, "gpu-feature-discovery").spec.template.spec.runtimeClassName, "nvidia");
  const r = render({ vfioManager: { enabled: true }, migManager: { enabled: true }, dcgm: { enabled: false }, kataManager: { enabled: "true" } });
  assert.deepEqual(r.unsupported, ["migManager", "vfioManager"]);
  assert.deepEqual(r.enabled, ["toolkit", "validator", "devicePlugin", "gfd", "dcgmExporter"]);
  assert.deepEqual(UNSUPPORTED_COMPONENTS, ["migManager", "dcgm", "nodeStatusExporter", "sandboxWorkloads", "vgpuManager", "vgpuDeviceManager", "kataManager", "ccManager", "vfioManager", "sandboxDevicePlugin"]);
});

test("operandStatuses: the error sentence; notReady nodes named; lists capped at 20; unsupported components say so", () => {
  assert.deepEqual(operandStatuses({ policy: policy(), nodes: [], ready: ready([]), error: "spec.gfd.enabled must be a boolean" }), [
    { name: "operands", daemonSet: "", state: "error", message: "spec.gfd.enabled must be a boolean. Operand DaemonSets are left as they are until the policy is fixed." },
  ]);
  const open = { "gpuop.nvidia.com/gate.container-toolkit": "open" };
  const nodes = [...Array.from({ length: 22 }, (_, i) => gpuNode(`w${String(i).padStart(2, "0")}`)), ...Array.from({ length: 23 }, (_, i) => gpuNode(`o${String(i).padStart(2, "0")}`, open)), gpuNode("r", open), gpuNode("off", { "nvidia.com/gpu.deploy.operands": "false" })];
  const s = operandStatuses({ policy: policy({ migManager: { enabled: true } }), nodes, ready: ready([["toolkit", ["r"]]]) });
  const tk = s.find((o) => o.name === "toolkit")!;
  assert.equal(tk.state, "notReady");
  assert.equal(tk.nodes, 46);
  assert.equal(tk.readyPods, 1);
  assert.equal(tk.waiting?.length, 20);
  assert.equal(tk.notReady?.length, 20);
  assert.equal(tk.notReady?.[0], "o00");
  assert.equal(tk.waiting?.[0], "w00");
  assert.deepEqual(s.at(-1), { name: "migManager", daemonSet: "", state: "unsupported", message: "gpuop does not deploy migManager; run it yourself or turn it off" });
  const oneReady = operandStatuses({ policy: policy(), nodes: [gpuNode("r", open)], ready: ready([["toolkit", ["r"]]]) }).find((o) => o.name === "toolkit")!;
  assert.deepEqual(oneReady, { name: "toolkit", daemonSet: "nvidia-container-toolkit-daemonset", state: "ready", nodes: 1, readyPods: 1 });
});

const NAMES = ["nvidia-container-toolkit-daemonset", "nvidia-device-plugin-daemonset", "gpu-feature-discovery", "nvidia-dcgm-exporter", "nvidia-operator-validator"];
const renderWith = (spec: Record<string, unknown>, runtimeVersions: string[]) => renderOperands({ policy: policy(spec), namespace: "gpu-ns", runtimeVersions });
const hostPaths = (d: ReturnType<typeof ds>) => Object.fromEntries(d.spec.template.spec.volumes.map((v) => [v.name, "hostPath" in v ? v.hostPath.path : ""]));

test("property of every pod: each mount names a volume of the pod, and names are unique (volumes, containers, env)", () => {
  for (const runtime of ["containerd://2", "docker://24", "cri-o://1.30"]) {
    for (const spec of [{}, { mig: { strategy: "mixed" }, toolkit: { installDir: "/opt/nv" }, devicePlugin: { args: ["--x"] } }]) {
      for (const d of renderWith(spec, [runtime]).daemonSets) {
        const pod = d.spec.template.spec;
        const volumes = pod.volumes.map((v) => v.name);
        assert.equal(new Set(volumes).size, volumes.length, `${d.metadata.name}: volume names unique`);
        const containers = [...(pod.initContainers ?? []), ...pod.containers];
        assert.equal(new Set(containers.map((c) => c.name)).size, containers.length);
        for (const c of containers) {
          for (const m of c.volumeMounts ?? []) assert.ok(volumes.includes(m.name), `${d.metadata.name}/${c.name} mounts ${m.name}`);
          const env = (c.env ?? []).map((e) => e.name);
          assert.equal(new Set(env).size, env.length, `${c.name}: env names unique`);
        }
      }
    }
  }
});

test("the toolkit configures the cluster's runtime through its own files and socket", () => {
  const toolkit = (runtime: string, spec: Record<string, unknown> = {}) => renderWith(spec, [runtime]).daemonSets.find((d) => d.metadata.name === NAMES[0])!;
  const tkEnv = (d: ReturnType<typeof toolkit>) => envOf(d.spec.template.spec.containers[0]);
  const containerd = toolkit("containerd://2.0", { operator: { runtimeClass: "nv-rc" } });
  assert.deepEqual(
    [tkEnv(containerd).RUNTIME, tkEnv(containerd).RUNTIME_CONFIG, tkEnv(containerd).RUNTIME_DROP_IN_CONFIG, tkEnv(containerd).RUNTIME_DROP_IN_CONFIG_HOST_PATH, tkEnv(containerd).RUNTIME_SOCKET, tkEnv(containerd).CONTAINERD_SOCKET, tkEnv(containerd).CONTAINERD_RUNTIME_CLASS],
    ["containerd", "/runtime/config-dir/config.toml", "/runtime/config-dir.d/99-nvidia.toml", "/etc/containerd/conf.d/99-nvidia.toml", "/runtime/sock-dir/containerd.sock", "/runtime/sock-dir/containerd.sock", "nv-rc"],
  );
  assert.deepEqual([hostPaths(containerd)["runtime-config-dir"], hostPaths(containerd)["runtime-drop-in-config"], hostPaths(containerd)["container-runtime-socket"]], ["/etc/containerd", "/etc/containerd/conf.d", "/run/containerd"]);
  const docker = toolkit("docker://24.0");
  assert.deepEqual([tkEnv(docker).RUNTIME, tkEnv(docker).RUNTIME_CONFIG, tkEnv(docker).DOCKER_SOCKET, tkEnv(docker).RUNTIME_SOCKET], ["docker", "/runtime/config-dir/daemon.json", "/runtime/sock-dir/docker.sock", "/runtime/sock-dir/docker.sock"]);
  assert.equal("CONTAINERD_SOCKET" in tkEnv(docker) || "CONTAINERD_RUNTIME_CLASS" in tkEnv(docker) || "RUNTIME_DROP_IN_CONFIG" in tkEnv(docker), false);
  assert.deepEqual([hostPaths(docker)["runtime-config-dir"], hostPaths(docker)["container-runtime-socket"], hostPaths(docker)["runtime-drop-in-config"]], ["/etc/docker", "/var/run", undefined]);
  const crio = toolkit("cri-o://1.30", { toolkit: { env: [{ name: "RUNTIME", value: "containerd" }, { name: "CRIO_CONFIG_MODE", value: "hook" }] } });
  assert.deepEqual([tkEnv(crio).RUNTIME, tkEnv(crio).CRIO_CONFIG_MODE, tkEnv(crio).RUNTIME_CONFIG, tkEnv(crio).RUNTIME_DROP_IN_CONFIG, tkEnv(crio).RUNTIME_DROP_IN_CONFIG_HOST_PATH], ["crio", "hook", "/runtime/config-dir/config.toml", "/runtime/config-dir.d/99-nvidia.conf", "/etc/crio/crio.conf.d/99-nvidia.conf"], "the policy may set CRIO_CONFIG_MODE but not the runtime");
  assert.equal("RUNTIME_SOCKET" in tkEnv(crio), false);
  assert.equal(tkEnv(toolkit("cri-o://1.30")).CRIO_CONFIG_MODE, "config");
  assert.equal("CRIO_CONFIG_MODE" in tkEnv(containerd), false);
  assert.deepEqual([hostPaths(crio)["runtime-config-dir"], hostPaths(crio)["runtime-drop-in-config"], hostPaths(crio)["container-runtime-socket"]], ["/etc/crio", "/etc/crio/crio.conf.d", undefined]);
  assert.equal(clusterRuntime(["runc://1"]), "containerd");
  assert.equal(clusterRuntime(["cri-o://1.30", "docker://24"]), "docker");
  assert.equal(clusterRuntime(["cri-o://1.30", "containerd://2"]), "containerd");
});

test("the toolkit's install dir and arguments; the device plugin's CDI hook follows the install dir", () => {
  const tk = ds({ toolkit: { installDir: "/opt/nv", args: ["--debug"], imagePullPolicy: "Always", resources: { requests: { cpu: "50m" } } } }, NAMES[0]!);
  const c = tk.spec.template.spec.containers[0]!;
  assert.equal(envOf(c).ROOT, "/opt/nv");
  assert.equal(hostPaths(tk)["toolkit-install-dir"], "/opt/nv");
  assert.equal(c.volumeMounts?.find((m) => m.name === "toolkit-install-dir")?.mountPath, "/opt/nv");
  assert.match(c.args![0]!, /exec nvidia-toolkit --debug$/);
  assert.equal(c.imagePullPolicy, "Always");
  assert.deepEqual(c.resources, { requests: { cpu: "50m" } });
  const plain = ds({ toolkit: { installDir: "" } }, NAMES[0]!).spec.template.spec.containers[0]!;
  assert.equal(envOf(plain).ROOT, "/usr/local/nvidia");
  assert.match(plain.args![0]!, /; exec nvidia-toolkit$/);
  assert.match(plain.args![0]!, /^until \[ -f \/run\/nvidia\/validations\/driver-ready \]/);
  assert.equal(plain.imagePullPolicy, "IfNotPresent");
  assert.equal(envOf(ds({ toolkit: { installDir: "/opt/nv" } }, NAMES[1]!).spec.template.spec.containers[0]).NVIDIA_CDI_HOOK_PATH, "/opt/nv/toolkit/nvidia-cdi-hook");
  assert.equal(envOf(ds({}, NAMES[1]!).spec.template.spec.containers[0]).NVIDIA_CDI_HOOK_PATH, "/usr/local/nvidia/toolkit/nvidia-cdi-hook");
});

test("MIG strategy: single by default; none drops the MIG device monitor; the validator's plugin check gets it too", () => {
  const envs = (mig: unknown) => [NAMES[1]!, NAMES[2]!].map((n) => envOf(ds(mig === undefined ? {} : { mig }, n).spec.template.spec.containers[0]));
  for (const e of envs(undefined)) assert.deepEqual([e.MIG_STRATEGY, e.NVIDIA_MIG_MONITOR_DEVICES], ["single", "all"]);
  for (const e of envs({ strategy: "" })) assert.equal(e.MIG_STRATEGY, "single");
  for (const e of envs({ strategy: "mixed" })) assert.deepEqual([e.MIG_STRATEGY, e.NVIDIA_MIG_MONITOR_DEVICES], ["mixed", "all"]);
  for (const e of envs({ strategy: "none" })) assert.deepEqual([e.MIG_STRATEGY, "NVIDIA_MIG_MONITOR_DEVICES" in e], ["none", false]);
  const plugin = ds({ mig: { strategy: "mixed" } }, NAMES[4]!).spec.template.spec.initContainers!.find((c) => c.name === "plugin-validation")!;
  assert.deepEqual([envOf(plugin).MIG_STRATEGY, envOf(plugin).WITH_WORKLOAD, envOf(plugin).WITH_WAIT, envOf(plugin).COMPONENT], ["mixed", "false", "false", "plugin"]);
});

test("GFD, the exporter and the device plugin: arguments only when given, pull policy and resources from the policy", () => {
  const spec = { args: ["--a", "--b"], imagePullPolicy: "Never", resources: { limits: { memory: "1Gi" } } };
  const gfd = ds({ gfd: spec }, NAMES[2]!).spec.template.spec.containers[0]!;
  assert.deepEqual([gfd.command, gfd.args, gfd.imagePullPolicy, gfd.resources], [["gpu-feature-discovery"], ["--a", "--b"], "Never", { limits: { memory: "1Gi" } }]);
  const dcgm = ds({ dcgmExporter: spec }, NAMES[3]!).spec.template.spec.containers[0]!;
  assert.deepEqual([dcgm.args, dcgm.imagePullPolicy, dcgm.resources], [["--a", "--b"], "Never", { limits: { memory: "1Gi" } }]);
  const dp = ds({ devicePlugin: spec }, NAMES[1]!).spec.template.spec.containers[0]!;
  assert.match(dp.args![0]!, /exec nvidia-device-plugin --a --b$/);
  assert.deepEqual([dp.imagePullPolicy, dp.resources], ["Never", { limits: { memory: "1Gi" } }]);
  for (const n of [NAMES[2]!, NAMES[3]!]) {
    const c = ds({ gfd: { args: [] }, dcgmExporter: { args: [] } }, n).spec.template.spec.containers[0]!;
    assert.equal("args" in c || "resources" in c, false, n);
    assert.equal(c.imagePullPolicy, "IfNotPresent");
  }
  const plainDp = ds({}, NAMES[1]!).spec.template.spec.containers[0]!;
  assert.match(plainDp.args![0]!, /; exec nvidia-device-plugin$/);
  assert.deepEqual([envOf(plainDp).DEVICE_LIST_STRATEGY, envOf(plainDp).CDI_ENABLED, envOf(plainDp).FAIL_ON_INIT_ERROR], ["cdi-annotations,cdi-cri", "true", "true"]);
  assert.equal(hostPaths(ds({}, NAMES[1]!))["device-plugin"], "/var/lib/kubelet/device-plugins");
  assert.equal(plainDp.volumeMounts?.find((m) => m.name === "device-plugin")?.mountPath, "/var/lib/kubelet/device-plugins");
  const gfdPaths = hostPaths(ds({}, NAMES[2]!));
  assert.equal(gfdPaths["output-dir"], "/etc/kubernetes/node-feature-discovery/features.d");
  assert.deepEqual(envOf(ds({}, NAMES[2]!).spec.template.spec.containers[0]).GFD_SLEEP_INTERVAL, "60s");
});

test("the exporter listens on 9400 and its Service is scraped there; the Service type comes from the policy", () => {
  const d = ds({}, NAMES[3]!);
  const c = d.spec.template.spec.containers[0]!;
  assert.deepEqual([envOf(c).DCGM_EXPORTER_LISTEN, envOf(c).DCGM_EXPORTER_KUBERNETES, c.ports], [":9400", "true", [{ name: "metrics", containerPort: 9400, protocol: "TCP" }]]);
  assert.equal(hostPaths(d)["pod-gpu-resources"], "/var/lib/kubelet/pod-resources");
  const svc = render({ dcgmExporter: { service: { type: "NodePort" } } }).services[0]!;
  assert.deepEqual(svc, {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: "nvidia-dcgm-exporter",
      namespace: "gpu-ns",
      labels: { app: "nvidia-dcgm-exporter", "gpuop.nvidia.com/operand": "dcgmExporter" },
      annotations: { "prometheus.io/scrape": "true" },
      ownerReferences: [{ apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", name: "cluster-policy", uid: "u1", controller: true, blockOwnerDeletion: true }],
    },
    spec: { selector: { app: "nvidia-dcgm-exporter" }, type: "NodePort", ports: [{ name: "gpu-metrics", port: 9400, targetPort: 9400, protocol: "TCP" }] },
  });
  assert.equal(render({ dcgmExporter: { service: { type: "" } } }).services[0]!.spec.type, "ClusterIP");
  assert.equal("ownerReferences" in renderOperands({ policy: policy(), namespace: "gpu-ns" }).services[0]!.metadata, false);
});

test("the validator: its inits run its own image and pull policy, with the policy's resources; the workload settings; preStop clears the ready files", () => {
  const v = ds({ validator: { repository: "r.example.com", image: "val", version: "v2", imagePullPolicy: "Always", resources: { limits: { cpu: 1 } }, env: [{ name: "X", value: "y" }] }, operator: { runtimeClass: "nv-rc" } }, NAMES[4]!);
  const inits = v.spec.template.spec.initContainers!;
  for (const i of inits) assert.deepEqual([i.image, i.imagePullPolicy, i.resources], ["r.example.com/val:v2", "Always", { limits: { cpu: "1" } }], i.name);
  assert.deepEqual(inits.map((i) => [envOf(i).COMPONENT, envOf(i).WITH_WAIT]), [["driver", "true"], ["toolkit", "true"], ["cuda", "false"], ["plugin", "false"]]);
  assert.equal(envOf(inits[1]).NVIDIA_VISIBLE_DEVICES, "all");
  assert.deepEqual([envOf(inits[2]).VALIDATOR_IMAGE, envOf(inits[2]).VALIDATOR_IMAGE_PULL_POLICY, envOf(inits[2]).VALIDATOR_RUNTIME_CLASS], ["r.example.com/val:v2", "Always", "nv-rc"]);
  assert.deepEqual(inits[0]!.volumeMounts?.map((m) => [m.name, m.mountPath]), [["run-nvidia-validations", "/run/nvidia/validations"], ["host-root", "/host"], ["driver-install-dir", "/run/nvidia/driver"], ["host-dev-char", "/host-dev-char"]]);
  assert.deepEqual(inits[1]!.volumeMounts?.map((m) => m.name), ["run-nvidia-validations"]);
  const c = v.spec.template.spec.containers[0]!;
  assert.deepEqual(c.lifecycle, { preStop: { exec: { command: ["sh", "-c", "rm -f /run/nvidia/validations/*-ready"] } } });
  assert.deepEqual(c.env, [{ name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }, { name: "OPERATOR_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } }, { name: "X", value: "y" }]);
  assert.equal(c.imagePullPolicy, "Always");
  const plain = ds({}, NAMES[4]!).spec.template.spec.initContainers!;
  assert.equal("resources" in plain[0]!, false);
  assert.equal(plain[0]!.imagePullPolicy, "IfNotPresent");
});

test("gates: an operand whose deploy label is set to something other than true gets no gate; readyPods ignores pods without a node or app", () => {
  const n = gpuNode("n1", { "nvidia.com/gpu.deploy.device-plugin": "paused", "gpuop.nvidia.com/gate.device-plugin": "open", "nvidia.com/gpu.deploy.driver": "true" });
  const p = operandNodeLabels(n, ALL, true, ready([["driver", ["n1"]], ["toolkit", ["n1"]]]));
  assert.equal(p["gpuop.nvidia.com/gate.device-plugin"], null);
  assert.equal("nvidia.com/gpu.deploy.device-plugin" in p, false);
  const r = readyPods([{ metadata: { labels: { app: "nvidia-device-plugin-daemonset" } }, status: { conditions: [{ type: "Ready", status: "True" }] } }, { metadata: {}, spec: { nodeName: "a" }, status: { conditions: [{ type: "Ready", status: "True" }] } }, { metadata: { labels: { app: "gpu-feature-discovery" } }, spec: { nodeName: "a" } }, { metadata: { labels: { app: "gpu-feature-discovery" } }, spec: { nodeName: "b" }, status: { conditions: [{ type: "PodScheduled", status: "True" }, { type: "Ready", status: "True" }] } }]);
  assert.deepEqual([...r.keys()], ["gfd"]);
  assert.deepEqual([...r.get("gfd")!], ["b"]);
});

// Each operand's pod with the defaults, pinned: container name, command, privilege, fixed env, and each mount and host
// path (name|path|readOnly|propagation, name|path|type). NVIDIA's images read these paths and variables (common.ts
// follows NVIDIA's chart v26.7.0), so a change here must be deliberate: it is a different pod on every GPU node.
const shape = (d: ReturnType<typeof ds>) => {
  const p = d.spec.template.spec;
  const c = p.containers[0]!;
  return {
    serviceAccount: p.serviceAccountName,
    name: c.name,
    command: c.command,
    securityContext: c.securityContext,
    env: Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef.fieldPath])),
    mounts: (c.volumeMounts ?? []).map((m) => [m.name, m.mountPath, m.readOnly ?? false, m.mountPropagation ?? ""].join("|")),
    volumes: p.volumes.map((v) => ("hostPath" in v ? [v.name, v.hostPath.path, v.hostPath.type ?? ""].join("|") : v.name)),
  };
};

test("the device plugin's pod, pinned", () => {
  assert.deepEqual(shape(ds({}, "nvidia-device-plugin-daemonset")), {
    serviceAccount: "nvidia-device-plugin",
    name: "nvidia-device-plugin",
    command: ["/bin/bash", "-c"],
    securityContext: { privileged: true },
    env: {
      PASS_DEVICE_SPECS: "true", FAIL_ON_INIT_ERROR: "true", DEVICE_LIST_STRATEGY: "cdi-annotations,cdi-cri", DEVICE_ID_STRATEGY: "uuid",
      NVIDIA_VISIBLE_DEVICES: "all", NVIDIA_DRIVER_CAPABILITIES: "all", MPS_ROOT: "/run/nvidia/mps", MIG_STRATEGY: "single",
      NVIDIA_MIG_MONITOR_DEVICES: "all", CDI_ENABLED: "true", CDI_ANNOTATION_PREFIX: "cdi.k8s.io/", NVIDIA_CDI_HOOK_PATH: "/usr/local/nvidia/toolkit/nvidia-cdi-hook",
    },
    mounts: ["device-plugin|/var/lib/kubelet/device-plugins|false|", "run-nvidia-validations|/run/nvidia/validations|false|", "driver-install-dir|/driver-root|true|HostToContainer", "host-root|/host|true|HostToContainer", "cdi-root|/var/run/cdi|false|", "mps-root|/mps|false|", "mps-shm|/dev/shm|false|"],
    volumes: ["device-plugin|/var/lib/kubelet/device-plugins|", "run-nvidia-validations|/run/nvidia/validations|DirectoryOrCreate", "driver-install-dir|/run/nvidia/driver|DirectoryOrCreate", "host-root|/|", "cdi-root|/var/run/cdi|DirectoryOrCreate", "mps-root|/run/nvidia/mps|DirectoryOrCreate", "mps-shm|/run/nvidia/mps/shm|"],
  });
});

test("GFD's, the DCGM exporter's and the validator's pods, pinned", () => {
  assert.deepEqual(shape(ds({}, "gpu-feature-discovery")), {
    serviceAccount: "nvidia-gpu-feature-discovery",
    name: "gpu-feature-discovery",
    command: ["gpu-feature-discovery"],
    securityContext: { privileged: true },
    env: { GFD_SLEEP_INTERVAL: "60s", GFD_FAIL_ON_INIT_ERROR: "true", MIG_STRATEGY: "single", NVIDIA_MIG_MONITOR_DEVICES: "all" },
    mounts: ["output-dir|/etc/kubernetes/node-feature-discovery/features.d|false|", "host-sys|/sys|false|", "run-nvidia-validations|/run/nvidia/validations|false|"],
    volumes: ["output-dir|/etc/kubernetes/node-feature-discovery/features.d|", "host-sys|/sys|", "run-nvidia-validations|/run/nvidia/validations|DirectoryOrCreate"],
  });
  assert.deepEqual(shape(ds({}, "nvidia-dcgm-exporter")), {
    serviceAccount: "nvidia-dcgm-exporter",
    name: "nvidia-dcgm-exporter",
    command: undefined,
    securityContext: { privileged: true },
    env: { DCGM_EXPORTER_LISTEN: ":9400", DCGM_EXPORTER_KUBERNETES: "true", DCGM_EXPORTER_COLLECTORS: "/etc/dcgm-exporter/dcp-metrics-included.csv" },
    mounts: ["pod-gpu-resources|/var/lib/kubelet/pod-resources|true|", "run-nvidia-validations|/run/nvidia/validations|false|"],
    volumes: ["pod-gpu-resources|/var/lib/kubelet/pod-resources|", "run-nvidia-validations|/run/nvidia/validations|DirectoryOrCreate"],
  });
  const v = ds({}, "nvidia-operator-validator");
  assert.deepEqual(shape(v), {
    serviceAccount: "nvidia-operator-validator",
    name: "nvidia-operator-validator",
    command: ["sh", "-c"],
    securityContext: { privileged: true },
    env: { NODE_NAME: "spec.nodeName", OPERATOR_NAMESPACE: "metadata.namespace" },
    mounts: ["run-nvidia-validations|/run/nvidia/validations|false|Bidirectional"],
    volumes: ["run-nvidia-validations|/run/nvidia/validations|DirectoryOrCreate", "driver-install-dir|/run/nvidia/driver|DirectoryOrCreate", "host-root|/|", "host-dev-char|/dev/char|"],
  });
  assert.deepEqual(v.spec.template.spec.containers[0]!.args, ["echo all validations are successful; sleep infinity"]);
});

test("the toolkit's pod with containerd, pinned", () => {
  assert.deepEqual(shape(ds({}, "nvidia-container-toolkit-daemonset")), {
    serviceAccount: "nvidia-container-toolkit",
    name: "nvidia-container-toolkit-ctr",
    command: ["/bin/bash", "-c"],
    securityContext: { privileged: true },
    env: {
      ROOT: "/usr/local/nvidia", NVIDIA_CONTAINER_RUNTIME_MODES_CDI_DEFAULT_KIND: "management.nvidia.com/gpu", NVIDIA_VISIBLE_DEVICES: "void", CDI_ENABLED: "true",
      NVIDIA_RUNTIME_SET_AS_DEFAULT: "false", NVIDIA_CONTAINER_RUNTIME_MODE: "cdi", RUNTIME: "containerd", CONTAINERD_RUNTIME_CLASS: "nvidia",
      RUNTIME_CONFIG: "/runtime/config-dir/config.toml", RUNTIME_DROP_IN_CONFIG: "/runtime/config-dir.d/99-nvidia.toml", RUNTIME_DROP_IN_CONFIG_HOST_PATH: "/etc/containerd/conf.d/99-nvidia.toml",
      RUNTIME_SOCKET: "/runtime/sock-dir/containerd.sock", CONTAINERD_SOCKET: "/runtime/sock-dir/containerd.sock",
    },
    mounts: ["run-nvidia-toolkit|/run/nvidia/toolkit|false|", "run-nvidia-validations|/run/nvidia/validations|false|", "toolkit-install-dir|/usr/local/nvidia|false|", "driver-install-dir|/driver-root|false|HostToContainer", "host-root|/host|true|HostToContainer", "cdi-root|/var/run/cdi|false|", "runtime-config-dir|/runtime/config-dir/|false|", "runtime-drop-in-config|/runtime/config-dir.d/|false|", "container-runtime-socket|/runtime/sock-dir/|false|"],
    volumes: ["run-nvidia-toolkit|/run/nvidia/toolkit|", "run-nvidia-validations|/run/nvidia/validations|DirectoryOrCreate", "driver-install-dir|/run/nvidia/driver|DirectoryOrCreate", "host-root|/|", "host-dev-char|/dev/char|", "toolkit-install-dir|/usr/local/nvidia|", "cdi-root|/var/run/cdi|DirectoryOrCreate", "runtime-config-dir|/etc/containerd|", "runtime-drop-in-config|/etc/containerd/conf.d|DirectoryOrCreate", "container-runtime-socket|/run/containerd|"],
  });
});

test("validation inits: NVIDIA's command, root and privilege, the driver check's host mounts; the policy's env reaches GFD and the exporter", () => {
  const init = ds({}, "nvidia-operator-validator").spec.template.spec.initContainers![0]!;
  assert.deepEqual([init.command, init.args, init.securityContext], [["sh", "-c"], ["nvidia-validator"], { privileged: true, runAsUser: 0 }]);
  assert.deepEqual(init.volumeMounts, [
    { name: "run-nvidia-validations", mountPath: "/run/nvidia/validations", mountPropagation: "Bidirectional" },
    { name: "host-root", mountPath: "/host", readOnly: true, mountPropagation: "HostToContainer" },
    { name: "driver-install-dir", mountPath: "/run/nvidia/driver", mountPropagation: "HostToContainer" },
    { name: "host-dev-char", mountPath: "/host-dev-char" },
  ]);
  for (const [key, name] of [["gfd", "gpu-feature-discovery"], ["dcgmExporter", "nvidia-dcgm-exporter"]] as const) {
    const d = ds({ [key]: { env: [{ name: "EXTRA", value: "1" }] } }, name);
    assert.equal(envOf(d.spec.template.spec.containers[0]).EXTRA, "1", name);
    assert.deepEqual(d.spec.template.spec.initContainers?.map((c) => [c.name, envOf(c).COMPONENT]), [["toolkit-validation", "toolkit"]], name);
  }
  const d = ds({}, "gpu-feature-discovery");
  assert.equal(d.apiVersion, "apps/v1");
  assert.equal(d.kind, "DaemonSet");
});

test("gpuop status cells: a deleting pod or one without a node counts for nothing; off by operands=false or a deploy value other than true", () => {
  const pod = (app: string, node: string | undefined, isReady: boolean, deleting = false) => ({ metadata: { labels: { app }, ...(deleting ? { deletionTimestamp: "x" } : {}) }, ...(node ? { spec: { nodeName: node } } : {}), status: { conditions: [{ type: "PodScheduled", status: "True" }, { type: "Ready", status: isReady ? "True" : "False" }] } });
  const open = { "gpuop.nvidia.com/gate.container-toolkit": "open", "gpuop.nvidia.com/gate.device-plugin": "open" };
  const rows = operandNodeRows(
    [gpuNode("n", open), gpuNode("m", { "nvidia.com/gpu.deploy.operands": "false" }), gpuNode("k", { "nvidia.com/gpu.deploy.gpu-feature-discovery": "paused" })],
    [pod("nvidia-container-toolkit-daemonset", "n", true, true), pod("nvidia-device-plugin-daemonset", undefined, true), pod("nvidia-device-plugin-daemonset", "n", true), { metadata: {}, spec: { nodeName: "n" } }],
    new Set(),
  );
  assert.deepEqual(rows.map((r) => r.node), ["k", "m", "n"]);
  assert.equal(rows[2]!.operands.toolkit, "starting", "the deleting pod is not shown; the gate is open");
  assert.equal(rows[2]!.operands.devicePlugin, "ready");
  assert.deepEqual(Object.values(rows[1]!.operands), ["off", "off", "off", "off", "off"]);
  assert.equal(rows[0]!.operands.gfd, "off");
  assert.equal(rows[0]!.operands.devicePlugin, "waiting");
});

// Surviving mutants in operands/, equivalent: renderOperands' `driverEnabled` in the render context (no renderer reads
// it; operandNodeLabels takes its own argument), and the `?? ""` / `?? []` fallbacks for a pod without an app label, a
// node without a name and absent pull secrets (the text put in their place matches no operand, node or secret).

test("validatorExpected: only where the validator's deploy label is true, operands are not off, and operands ran against gpuop's driver", () => {
  const on = { "nvidia.com/gpu.deploy.operator-validator": "true" };
  const ran = { [OPERANDS_DRIVER_ANNOTATION]: "uid-1" };
  assert.equal(validatorExpected(on, ran), true);
  assert.equal(validatorExpected(on, {}), false, "operands never ran there");
  assert.equal(validatorExpected({ ...on, "nvidia.com/gpu.deploy.operands": "false" }, ran), false);
  assert.equal(validatorExpected({ "nvidia.com/gpu.deploy.operator-validator": "false" }, ran), false);
  assert.equal(validatorExpected({}, ran), false);
});
