import { test } from "node:test";
import assert from "node:assert/strict";
import { intern, NODE_UNREAD, OPERAND_POD_UNREAD, POD_UNREAD, slimDaemonSet, slimNode, slimOperandPod, slimPod, UNREAD, withoutManagedFields } from "./transforms.ts";
import { withoutMembers } from "./unread-members.ts";
import { NodeLabelBatch } from "./node-labels.ts";
import type { DaemonSet, Node, Pod } from "./types.ts";

const managedFields = [{ manager: "kubelet", operation: "Update", fieldsV1: { "f:status": {} } }];

const meta = {
  name: "gpu-7",
  namespace: "gpu-operator",
  uid: "3f1c",
  resourceVersion: "4242",
  generation: 3,
  creationTimestamp: "2026-11-27T10:00:00Z",
  deletionTimestamp: "2026-11-27T11:00:00Z",
  labels: { "controller-revision-hash": "7d9f", "pod-template-generation": "4", "gpuop.nvidia.com/driver-pool": "pool-a" },
  annotations: { "nvidia.com/gpu-driver-upgrade-state": "upgrade-required", "gpuop.nvidia.com/upgrade-state-since": "2026-11-27T10:30:00Z" },
  ownerReferences: [{ apiVersion: "apps/v1", kind: "DaemonSet", name: "pool-a", uid: "9a", controller: true }],
  finalizers: ["example.com/keep"],
  managedFields,
};

const kept = { ...meta } as Record<string, unknown>;
delete kept.managedFields;
delete kept.finalizers;

test("a cached Node keeps metadata, unschedulable, taints, nodeInfo, the Ready condition and nvidia.com resources only", () => {
  const node = {
    apiVersion: "v1",
    kind: "Node",
    metadata: structuredClone(meta),
    spec: { unschedulable: true, taints: [{ key: "k", effect: "NoSchedule" }], podCIDR: "10.0.0.0/24", providerID: "kwok://gpu-7" },
    status: {
      nodeInfo: { kernelVersion: "6.8.0-1046-azure", osImage: "Ubuntu 24.04.1 LTS", architecture: "arm64", operatingSystem: "linux", containerRuntimeVersion: "containerd://2.1.4", bootID: "b", machineID: "m", systemUUID: "u", kubeletVersion: "v1.36.3" },
      conditions: [{ type: "MemoryPressure", status: "False", reason: "KubeletHasSufficientMemory", message: "ok", lastTransitionTime: "t0", lastHeartbeatTime: "t2" }, { type: "Ready", status: "False", reason: "KubeletNotReady", message: "m", lastTransitionTime: "t1", lastHeartbeatTime: "t2" }],
      capacity: { cpu: "64", memory: "512Gi", "nvidia.com/gpu": "8", "nvidia.com/mig-1g.10gb": "7" },
      allocatable: { cpu: "63", "nvidia.com/gpu": "6" },
      images: [{ names: ["nvcr.io/nvidia/driver:580"], sizeBytes: 1 }],
      addresses: [{ type: "InternalIP", address: "10.0.0.7" }],
    },
  } as unknown as Node;
  const slim = slimNode(node);
  assert.deepEqual(slim, {
    apiVersion: "v1",
    kind: "Node",
    metadata: kept,
    spec: { unschedulable: true, taints: [{ key: "k", effect: "NoSchedule" }] },
    status: {
      nodeInfo: { kernelVersion: "6.8.0-1046-azure", osImage: "Ubuntu 24.04.1 LTS", architecture: "arm64", operatingSystem: "linux", containerRuntimeVersion: "containerd://2.1.4" },
      conditions: [{ type: "Ready", status: "False", reason: "KubeletNotReady", message: "m", lastTransitionTime: "t1" }],
      capacity: { "nvidia.com/gpu": "8", "nvidia.com/mig-1g.10gb": "7" },
      allocatable: { "nvidia.com/gpu": "6" },
    },
  });
});

test("a cached Node or Pod keeps only gpuop's and NVIDIA's annotations; a DaemonSet keeps all", () => {
  const annotations = { "gpuop.nvidia.com/upgrade-cordoned": "true", "nvidia.com/gpu-driver-upgrade-requested": "true", "csi.volume.kubernetes.io/nodeid": "{\"ebs.csi.aws.com\":\"i-0abc\"}", "flannel.alpha.coreos.com/backend-data": "x".repeat(200) };
  const own = { "gpuop.nvidia.com/upgrade-cordoned": "true", "nvidia.com/gpu-driver-upgrade-requested": "true" };
  assert.deepEqual(slimNode({ metadata: { name: "n", annotations } } as Node).metadata, { name: "n", annotations: own });
  assert.deepEqual(slimPod({ metadata: { name: "p", annotations } } as Pod).metadata, { name: "p", annotations: own });
  // None of its own: no annotations member at all.
  assert.deepEqual(slimNode({ metadata: { name: "n", annotations: { "node.alpha.kubernetes.io/ttl": "0" } } } as Node).metadata, { name: "n" });
  assert.deepEqual(slimDaemonSet({ metadata: { name: "d", annotations } } as DaemonSet).metadata, { name: "d", annotations });
});

test("a Node without status or resources stays without them (no undefined members)", () => {
  const slim = slimNode({ metadata: { name: "n", labels: { a: "b" } }, status: { conditions: [] } } as Node);
  assert.deepEqual(slim, { metadata: { name: "n", labels: { a: "b" } }, status: { conditions: [] } });
  assert.equal(JSON.stringify(slim), '{"metadata":{"name":"n","labels":{"a":"b"}},"status":{"conditions":[]}}');
});

test("a cached Pod keeps nodeName, container images, phase, the Ready and ContainersReady conditions, container statuses and its labels", () => {
  const state = { waiting: { reason: "ImagePullBackOff", message: "no such tag" } };
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: structuredClone(meta),
    spec: {
      nodeName: "gpu-7",
      containers: [{ name: "nvidia-driver-ctr", image: "nvcr.io/nvidia/driver:580-6.8.0-1046-azure-ubuntu24.04", env: [{ name: "X", value: "y" }], volumeMounts: [{ name: "v", mountPath: "/v" }] }],
      initContainers: [{ name: "k8s-driver-manager", image: "nvcr.io/nvidia/cloud-native/k8s-driver-manager:v0.8.0", args: ["uninstall_driver"] }],
      volumes: [{ name: "v", hostPath: { path: "/run/nvidia" } }],
      tolerations: [{ operator: "Exists" }],
    },
    status: {
      phase: "Pending",
      startTime: "s",
      podIP: "10.0.0.9",
      conditions: [{ type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: "t0" }, { type: "Ready", status: "False", lastProbeTime: null, lastTransitionTime: "t" }, { type: "ContainersReady", status: "False", reason: "ContainersNotReady", lastTransitionTime: "t2" }],
      containerStatuses: [{ name: "nvidia-driver-ctr", ready: false, started: false, restartCount: 2, image: "img", imageID: "nvcr.io/nvidia/driver@sha256:ab", state, lastState: {}, containerID: "c" }],
      initContainerStatuses: [{ name: "k8s-driver-manager", ready: true, restartCount: 0, image: "i", imageID: "i@sha256:cd", state: { terminated: { exitCode: 0 } } }],
    },
  } as unknown as Pod;
  const slim = slimPod(pod);
  assert.deepEqual(slim, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: kept,
    spec: {
      nodeName: "gpu-7",
      containers: [{ name: "nvidia-driver-ctr", image: "nvcr.io/nvidia/driver:580-6.8.0-1046-azure-ubuntu24.04" }],
      initContainers: [{ name: "k8s-driver-manager", image: "nvcr.io/nvidia/cloud-native/k8s-driver-manager:v0.8.0" }],
    },
    status: {
      phase: "Pending",
      startTime: "s",
      conditions: [{ type: "Ready", status: "False", lastTransitionTime: "t" }, { type: "ContainersReady", status: "False", reason: "ContainersNotReady", lastTransitionTime: "t2" }],
      containerStatuses: [{ name: "nvidia-driver-ctr", ready: false, started: false, restartCount: 2, image: "img", imageID: "nvcr.io/nvidia/driver@sha256:ab", state, lastState: {} }],
      initContainerStatuses: [{ name: "k8s-driver-manager", ready: true, restartCount: 0, image: "i", imageID: "i@sha256:cd", state: { terminated: { exitCode: 0 } } }],
    },
  });
});

test("a cached DaemonSet keeps its whole spec and status; only managedFields and finalizers go", () => {
  const ds = {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: structuredClone(meta),
    spec: { selector: { matchLabels: { app: "x" } }, template: { metadata: { labels: { app: "x" } }, spec: { nodeSelector: { "gpuop.nvidia.com/driver-pool": "pool-a" }, containers: [{ name: "c", image: "i" }] } }, updateStrategy: { type: "OnDelete" } },
    status: { desiredNumberScheduled: 5, numberReady: 4, updatedNumberScheduled: 3, observedGeneration: 3 },
  } as unknown as DaemonSet;
  const slim = slimDaemonSet(structuredClone(ds));
  assert.deepEqual(slim, { ...ds, metadata: kept });
});

test("withoutManagedFields keeps everything else", () => {
  const obj = { metadata: { name: "cluster-policy", managedFields, finalizers: ["f"] }, spec: { driver: { version: "580" } }, status: { state: "ready" } };
  assert.deepEqual(withoutManagedFields(obj), { metadata: { name: "cluster-policy", finalizers: ["f"] }, spec: { driver: { version: "580" } }, status: { state: "ready" } });
});

test("a node's label changes gathered in one pass make one patch, later values winning", () => {
  const batch = new NodeLabelBatch();
  batch.set("gpu-1", { "nvidia.com/gpu.present": "true", "nvidia.com/gpu.deploy.driver": "true" });
  batch.set("gpu-2", {});
  batch.set("gpu-1", { "gpuop.nvidia.com/driver-pool": "pool-b" });
  batch.set("gpu-3", { "gpuop.nvidia.com/driver-pool": null });
  batch.set("gpu-1", { "nvidia.com/gpu.deploy.driver": "false" });
  assert.equal(batch.size, 2);
  assert.deepEqual(batch.entries(), [
    ["gpu-1", { "nvidia.com/gpu.present": "true", "nvidia.com/gpu.deploy.driver": "false", "gpuop.nvidia.com/driver-pool": "pool-b" }],
    ["gpu-3", { "gpuop.nvidia.com/driver-pool": null }],
  ]);
});

test("cached objects share one copy of a repeated value (an image, a label value) and keep their own unique ones", () => {
  const pod = (i: number) => JSON.parse(JSON.stringify({
    metadata: { name: `p${i}`, namespace: "gpu-operator", uid: `u-${i}`, labels: { app: "nvidia-operator-validator" }, ownerReferences: [{ apiVersion: "apps/v1", kind: "DaemonSet", name: "nvidia-operator-validator", uid: "ds-1", controller: true }] },
    spec: { nodeName: `n${i}`, containers: [{ name: "nvidia-operator-validator", image: "nvcr.io/nvidia/cloud-native/gpu-operator-validator:v25.3.0" }] },
    status: { phase: "Running", conditions: [{ type: "Ready", status: "True", lastTransitionTime: `2026-11-28T01:0${i}:00Z` }] },
  })) as Pod;
  const [a, b] = [slimPod(pod(1)), slimPod(pod(2))];
  // Equal values whatever their identity; what interning changes is only how many copies the heap holds.
  assert.equal(a.spec!.containers![0]!.image, b.spec!.containers![0]!.image);
  assert.equal(intern("nvcr.io/nvidia/cloud-native/gpu-operator-validator:v25.3.0"), a.spec!.containers![0]!.image);
  assert.notEqual(a.metadata.uid, b.metadata.uid);
  assert.equal(a.metadata.labels!["app"], "nvidia-operator-validator");
  assert.deepEqual(a.metadata.ownerReferences, [{ apiVersion: "apps/v1", kind: "DaemonSet", name: "nvidia-operator-validator", uid: "ds-1", controller: true }]);
  assert.equal(intern(42), 42);
  const long = "x".repeat(300);
  assert.equal(intern(long), long);
});

test("a cached operand pod keeps where it runs, its phase and its Ready condition only", () => {
  const pod = {
    metadata: { name: "nvidia-operator-validator-x", namespace: "gpu-operator", uid: "u1", labels: { app: "nvidia-operator-validator" }, deletionTimestamp: "t9" },
    spec: { nodeName: "gpu-3", containers: [{ name: "nvidia-operator-validator", image: "v" }], initContainers: [{ name: "driver-validation", image: "v" }] },
    status: { phase: "Running", conditions: [{ type: "PodScheduled", status: "True" }, { type: "Ready", status: "True", lastTransitionTime: "t1" }], containerStatuses: [{ name: "c", ready: true }] },
  } as unknown as Pod;
  assert.deepEqual(slimOperandPod(pod), {
    metadata: { name: "nvidia-operator-validator-x", namespace: "gpu-operator", uid: "u1", labels: { app: "nvidia-operator-validator" }, deletionTimestamp: "t9" },
    spec: { nodeName: "gpu-3" },
    status: { phase: "Running", conditions: [{ type: "Ready", status: "True", lastTransitionTime: "t1" }] },
  });
  assert.deepEqual(slimOperandPod({ metadata: { name: "pending" }, spec: { containers: [] } } as unknown as Pod), { metadata: { name: "pending" } });
});

test("each transform gives the same from an event's text with its unread members cut (they are never read), and the cut takes most of a driver pod", () => {
  // Every cut name where a Kubernetes object has it, and as label keys (string values: never cut).
  const labels = Object.fromEntries([...OPERAND_POD_UNREAD, ...NODE_UNREAD, "app"].map((k) => [k, `v-${k}`]));
  const probe = { exec: { command: ["sh", "-c", "test -f /run/nvidia/validations/driver-ready"] }, periodSeconds: 10 };
  const container = (name: string) => ({
    name,
    image: `nvcr.io/nvidia/${name}:580`,
    env: [{ name: "NVIDIA_VISIBLE_DEVICES", value: "void" }],
    envFrom: [{ configMapRef: { name: "x" } }],
    volumeMounts: [{ name: "run-nvidia", mountPath: "/run/nvidia", mountPropagation: "Bidirectional" }],
    securityContext: { privileged: true, seLinuxOptions: { level: "s0" } },
    resources: { limits: { "nvidia.com/gpu": "1" } },
    readinessProbe: probe,
    livenessProbe: probe,
    startupProbe: probe,
  });
  const metadata = { ...structuredClone(meta), labels: { ...meta.labels, ...labels }, managedFields: [{ manager: "kube-controller-manager", fieldsV1: { "f:spec": { 'k:{"name":"nvidia-driver-ctr"}': { ".": {}, "f:env": {} } } } }] };
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata,
    spec: {
      nodeName: "gpu-7",
      initContainers: [container("k8s-driver-manager")],
      containers: [container("nvidia-driver-ctr"), container("nvidia-fs-ctr")],
      volumes: Array.from({ length: 12 }, (_, i) => ({ name: `v${i}`, hostPath: { path: `/host/${i}`, type: "Directory" } })),
      tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: "metadata.name", operator: "In", values: ["gpu-7"] }] }] } } },
      securityContext: {},
    },
    status: {
      phase: "Running",
      startTime: "2026-11-27T10:00:00Z",
      conditions: [{ type: "Ready", status: "True", lastTransitionTime: "t" }, { type: "ContainersReady", status: "True", lastTransitionTime: "t" }, { type: "PodScheduled", status: "True" }],
      initContainerStatuses: [{ name: "k8s-driver-manager", ready: true, restartCount: 0, image: "i", imageID: "sha", state: { terminated: { exitCode: 0, reason: "Completed" } }, resources: {}, volumeMounts: [{ name: "x", mountPath: "/x" }] }],
      containerStatuses: [{ name: "nvidia-driver-ctr", ready: true, started: true, restartCount: 2, image: "i", imageID: "sha", state: { running: { startedAt: "t" } }, lastState: { waiting: { reason: "CrashLoopBackOff" } }, resources: {}, volumeMounts: [] }],
    },
  };
  const node = {
    apiVersion: "v1",
    kind: "Node",
    metadata,
    spec: { taints: [{ key: "k", effect: "NoSchedule" }] },
    status: { nodeInfo: { kernelVersion: "6.8.0-1046-azure" }, conditions: [{ type: "Ready", status: "True" }], capacity: { "nvidia.com/gpu": "8" }, images: [{ names: ["a", "b"], sizeBytes: 1 }] },
  };
  const cases = [
    { what: "node", obj: node, unread: NODE_UNREAD, slim: (o: unknown) => slimNode(o as Node) },
    { what: "driver pod", obj: pod, unread: POD_UNREAD, slim: (o: unknown) => slimPod(o as Pod) },
    { what: "operand pod", obj: pod, unread: OPERAND_POD_UNREAD, slim: (o: unknown) => slimOperandPod(o as Pod) },
    { what: "any object", obj: pod, unread: UNREAD, slim: (o: unknown) => withoutManagedFields(o as Pod) },
  ];
  for (const { what, obj, unread, slim } of cases) {
    const text = JSON.stringify({ type: "MODIFIED", object: obj });
    const cut = withoutMembers(text, unread);
    assert.ok(cut.length < text.length, `${what}: something was cut`);
    assert.deepEqual(slim((JSON.parse(cut) as { object: unknown }).object), slim((JSON.parse(text) as { object: unknown }).object), what);
    // The labels named like cut members are all there.
    assert.deepEqual((JSON.parse(cut) as { object: Pod }).object.metadata.labels, metadata.labels, what);
  }
  const podText = JSON.stringify(pod);
  assert.ok(withoutMembers(podText, POD_UNREAD).length < podText.length / 2, "a driver pod: more than half of its text is cut");
});
