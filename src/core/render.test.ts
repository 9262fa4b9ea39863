import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { canonicalJson } from "./diff.ts";
import {
  DRIVER_CONTAINER,
  POOL_LABEL,
  renderDriverDaemonSets,
  type DriverDaemonSet,
  type RenderInput,
} from "./render.ts";
import { desiredNodeLabels, DEPLOY_DRIVER_LABEL, DEPLOY_OPERANDS_LABEL, NFD_KERNEL_LABEL, NFD_NVIDIA_PCI_LABEL, type NodeLike } from "./gpu-node.ts";
import { NFD_OS_ID_LABEL, NFD_OS_VERSION_ID_LABEL } from "./os.ts";
import { isDnsSubdomain, isLabelValue } from "./names.ts";
import { normalizePolicy, type ClusterPolicy, type DriverSpec } from "./policy.ts";
import { driverTemplateHash, TEMPLATE_HASH_ANNOTATION } from "./upgrade.ts";
import { gpuNodeObject } from "../../test/harness/nodes.ts";

/** A Ready GPU node as NFD labels it (the harness's simulated node). */
function node(name: string, kernel: string, os = "ubuntu", version = "22.04", extra: Record<string, string> = {}): NodeLike {
  const n = gpuNodeObject({ name, kernel, os: { id: os, versionId: version }, labels: extra });
  return { ...n, status: { ...n.status, conditions: [{ type: "Ready", status: "True" }] } };
}

/** A Ready GPU node NFD never labelled: the kubelet's nodeInfo only. */
function nodeWithoutNfd(name: string, kernel: string, os = "ubuntu", version = "22.04", extra: Record<string, string> = {}): NodeLike {
  const n = gpuNodeObject({ name, kernel, os: { id: os, versionId: version }, labels: extra, withoutNfdLabels: true });
  return { ...n, status: { ...n.status, conditions: [{ type: "Ready", status: "True" }] } };
}

function policy(driver: DriverSpec, spec: Record<string, unknown> = {}): ClusterPolicy {
  return {
    apiVersion: "nvidia.com/v1",
    kind: "ClusterPolicy",
    metadata: { name: "cluster-policy", uid: "0b5e3c43-policy-uid", generation: 1 },
    spec: { ...spec, driver: { repository: "nvcr.io/nvidia", image: "driver", ...driver } },
  };
}

function render(driver: DriverSpec, nodes: NodeLike[], extra: Partial<RenderInput> = {}) {
  return renderDriverDaemonSets({ policy: policy(driver), nodes, namespace: "gpu-operator", ...extra });
}

const summary = (r: ReturnType<typeof render>) =>
  r.daemonSets.map((ds) => ({ name: ds.metadata.name, image: ds.spec.template.spec.containers[0]?.image }));

/** Whether a DaemonSet's pods may run on a node (nodeSelector and node affinity). */
function selects(ds: DriverDaemonSet, labels: Record<string, string>): boolean {
  const pod = ds.spec.template.spec;
  if (!Object.entries(pod.nodeSelector).every(([k, v]) => labels[k] === v)) return false;
  const terms = pod.affinity?.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
  if (!terms) return true;
  return terms.some((t) => t.matchExpressions.every((e) => e.values.includes(labels[e.key] ?? "\0") === (e.operator === "In")));
}

/** Node labels once the controller has labelled it (deploy label, pool label). */
function labelled(n: NodeLike, pool: string | undefined): Record<string, string> {
  const labels = { ...n.metadata.labels };
  for (const [k, v] of Object.entries(desiredNodeLabels(n))) {
    if (v === null) delete labels[k];
    else labels[k] = v;
  }
  if (pool !== undefined) labels[POOL_LABEL] = pool;
  return labels;
}

test("seed flow: conventional, then precompiled with a branch, then conventional again", () => {
  const nodes = [node("gpu-a", "5.15.0-69-generic"), node("gpu-b", "5.15.0-70-generic")];
  const conventional = render({ usePrecompiled: false, version: "525.105.17" }, nodes);
  assert.deepEqual(summary(conventional), [
    { name: "nvidia-driver-daemonset-ubuntu22.04", image: "nvcr.io/nvidia/driver:525.105.17-ubuntu22.04" },
  ]);
  assert.equal(conventional.daemonSets[0]?.metadata.labels["nvidia.com/precompiled"], "false");
  assert.deepEqual(conventional.pools, [
    { name: "nvidia-driver-daemonset-ubuntu22.04", osTag: "ubuntu22.04", image: "nvcr.io/nvidia/driver:525.105.17-ubuntu22.04", precompiled: false, nodes: ["gpu-a", "gpu-b"] },
  ]);
  // The conventional DaemonSet does not select on the kernel, so its pod names carry none.
  assert.equal(conventional.daemonSets[0]?.spec.template.spec.nodeSelector[NFD_KERNEL_LABEL], undefined);

  // kubectl patch ... usePrecompiled=true, version=525
  const precompiled = render({ usePrecompiled: true, version: "525" }, nodes);
  assert.deepEqual(summary(precompiled), [
    { name: "nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04", image: "nvcr.io/nvidia/driver:525-5.15.0-69-generic-ubuntu22.04" },
    { name: "nvidia-driver-daemonset-5.15.0-70-generic-ubuntu22.04", image: "nvcr.io/nvidia/driver:525-5.15.0-70-generic-ubuntu22.04" },
  ]);
  for (const ds of precompiled.daemonSets) {
    assert.equal(ds.metadata.labels["nvidia.com/precompiled"], "true");
    assert.match(ds.metadata.name, /5\.15\.0-(69|70)-generic/);
  }
  assert.deepEqual(precompiled.pools.map((p) => [p.kernel, p.nodes]), [
    ["5.15.0-69-generic", ["gpu-a"]],
    ["5.15.0-70-generic", ["gpu-b"]],
  ]);

  // kubectl patch ... usePrecompiled=false (version stays "525", as in the seed's disable flow)
  const back = render({ usePrecompiled: false, version: "525" }, nodes);
  assert.deepEqual(summary(back), [{ name: "nvidia-driver-daemonset-ubuntu22.04", image: "nvcr.io/nvidia/driver:525-ubuntu22.04" }]);
  assert.equal(back.daemonSets[0]?.metadata.labels["nvidia.com/precompiled"], "false");
});

test("mixed cluster: three kernels, two Ubuntu releases", () => {
  const nodes = [
    node("n1", "5.15.0-69-generic", "ubuntu", "22.04"),
    node("n2", "5.15.0-69-generic", "ubuntu", "22.04"),
    node("n3", "5.15.0-105-generic", "ubuntu", "22.04"),
    node("n4", "6.8.0-45-generic", "ubuntu", "24.04"),
    node("n5", "6.8.0-45-generic", "ubuntu", "24.04"),
    { metadata: { name: "cpu-1", labels: { [NFD_OS_ID_LABEL]: "ubuntu" } } },
  ];
  const conventional = render({ version: "550.54.15" }, nodes);
  assert.deepEqual(summary(conventional), [
    { name: "nvidia-driver-daemonset-ubuntu22.04", image: "nvcr.io/nvidia/driver:550.54.15-ubuntu22.04" },
    { name: "nvidia-driver-daemonset-ubuntu24.04", image: "nvcr.io/nvidia/driver:550.54.15-ubuntu24.04" },
  ]);
  assert.deepEqual(conventional.pools.map((p) => p.nodes), [["n1", "n2", "n3"], ["n4", "n5"]]);
  assert.deepEqual(conventional.daemonSets[1]?.spec.template.spec.nodeSelector, {
    [NFD_OS_ID_LABEL]: "ubuntu",
    [NFD_OS_VERSION_ID_LABEL]: "24.04",
    [DEPLOY_DRIVER_LABEL]: "true",
    [POOL_LABEL]: "nvidia-driver-daemonset-ubuntu24.04",
  });

  const precompiled = render({ usePrecompiled: true, version: "550" }, nodes);
  assert.deepEqual(summary(precompiled), [
    { name: "nvidia-driver-daemonset-5.15.0-105-generic-ubuntu22.04", image: "nvcr.io/nvidia/driver:550-5.15.0-105-generic-ubuntu22.04" },
    { name: "nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04", image: "nvcr.io/nvidia/driver:550-5.15.0-69-generic-ubuntu22.04" },
    { name: "nvidia-driver-daemonset-6.8.0-45-generic-ubuntu24.04", image: "nvcr.io/nvidia/driver:550-6.8.0-45-generic-ubuntu24.04" },
  ]);
  assert.deepEqual(precompiled.daemonSets[2]?.spec.template.spec.nodeSelector, {
    [NFD_OS_ID_LABEL]: "ubuntu",
    [NFD_OS_VERSION_ID_LABEL]: "24.04",
    [NFD_KERNEL_LABEL]: "6.8.0-45-generic",
    [DEPLOY_DRIVER_LABEL]: "true",
    [POOL_LABEL]: "nvidia-driver-daemonset-6.8.0-45-generic-ubuntu24.04",
  });
  assert.deepEqual(precompiled.problems, []);
});

test("kernel names are sanitized into valid names; the image keeps the kernel as is", () => {
  const r = render({ usePrecompiled: true, version: "550" }, [
    node("rh", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4"),
    node("az", "6.8.0-1046-azure-fde", "ubuntu", "22.04"),
  ]);
  for (const ds of r.daemonSets) assert.ok(isDnsSubdomain(ds.metadata.name) && isLabelValue(ds.metadata.name), ds.metadata.name);
  const rh = r.daemonSets.find((d) => d.metadata.name.includes("el9"));
  assert.ok(rh);
  assert.equal(rh.spec.template.spec.containers[0]?.image, "nvcr.io/nvidia/driver:550-5.14.0-427.13.1.el9_4.x86_64-rhel9");
  assert.equal(rh.spec.template.spec.nodeSelector[NFD_KERNEL_LABEL], "5.14.0-427.13.1.el9_4.x86_64");
  // rhel9 covers 9.x: VERSION_ID is matched by the values the pool's nodes have.
  assert.equal(rh.spec.template.spec.nodeSelector[NFD_OS_VERSION_ID_LABEL], undefined);
  assert.deepEqual(rh.spec.template.spec.affinity?.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms, [
    { matchExpressions: [{ key: NFD_OS_VERSION_ID_LABEL, operator: "In", values: ["9.4"] }, { key: "nvidia.com/gpu-driver-upgrade-state", operator: "NotIn", values: ["pod-restart-required"] }] },
  ]);
  assert.ok(r.daemonSets.some((d) => d.metadata.name === "nvidia-driver-daemonset-6.8.0-1046-azure-fde-ubuntu22.04"));
});

test("a digest version names one image for every OS", () => {
  const digest = `sha256:${"ab".repeat(32)}`;
  const r = render({ version: digest }, [node("a", "5.15.0-69-generic"), node("b", "6.8.0-45-generic", "ubuntu", "24.04")]);
  assert.deepEqual(r.daemonSets.map((d) => d.spec.template.spec.containers[0]?.image), [
    `nvcr.io/nvidia/driver@${digest}`,
    `nvcr.io/nvidia/driver@${digest}`,
  ]);
});

test("image pull secrets, policy env, args, resources and probes reach every pod", () => {
  const nodes = [node("a", "5.15.0-69-generic"), node("b", "5.15.0-70-generic"), node("c", "6.8.0-45-generic", "ubuntu", "24.04")];
  const r = render(
    {
      usePrecompiled: true,
      version: "550",
      imagePullSecrets: ["regcred", "other"],
      imagePullPolicy: "Always",
      env: [{ name: "FOO", value: "bar" }, { name: "KERNEL_MODULE_TYPE", value: "open" }],
      args: ["--debug"],
      resources: { limits: { memory: "2Gi", cpu: 2 }, requests: {} },
      startupProbe: { failureThreshold: 30 },
      readinessProbe: { periodSeconds: 5 },
      kernelModuleConfig: { name: "module-params" },
      rdma: { enabled: true, useHostMofed: true },
      secretEnv: "driver-secrets",
    },
    nodes,
  );
  assert.equal(r.daemonSets.length, 3);
  for (const ds of r.daemonSets) {
    const pod = ds.spec.template.spec;
    assert.deepEqual(pod.imagePullSecrets, [{ name: "regcred" }, { name: "other" }]);
    const c = pod.containers[0];
    assert.ok(c);
    assert.equal(c.name, DRIVER_CONTAINER);
    assert.equal(c.imagePullPolicy, "Always");
    assert.deepEqual(c.command, ["nvidia-driver"]);
    assert.deepEqual(c.args, ["init", "--debug"]);
    assert.deepEqual(c.resources, { limits: { memory: "2Gi", cpu: "2" } });
    assert.deepEqual(c.envFrom, [{ secretRef: { name: "driver-secrets" } }]);
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
    assert.deepEqual(env, {
      NODE_NAME: { fieldRef: { fieldPath: "spec.nodeName" } },
      KERNEL_MODULE_TYPE: "open",
      GPU_DIRECT_RDMA_ENABLED: "true",
      USE_HOST_MOFED: "true",
      FOO: "bar",
      NVIDIA_VISIBLE_DEVICES: "void",
    });
    assert.equal(c.startupProbe?.failureThreshold, 30);
    assert.equal(c.startupProbe?.initialDelaySeconds, 60);
    assert.equal(c.readinessProbe?.periodSeconds, 5);
    assert.equal(c.livenessProbe, undefined);
    assert.ok(c.volumeMounts.some((m) => m.name === "kernel-module-config" && m.mountPath === "/drivers"));
    assert.ok(pod.volumes.some((v) => v.name === "kernel-module-config" && "configMap" in v && v.configMap.name === "module-params"));
    assert.ok(c.volumeMounts.some((m) => m.mountPath === "/run/mellanox/drivers"));
  }
});

test("the driver container always runs with NVIDIA_VISIBLE_DEVICES=void, even when the policy's env says otherwise", () => {
  const r = render({ version: "550.54.15", env: [{ name: "NVIDIA_VISIBLE_DEVICES", value: "all" }] }, [node("a", "5.15.0-69-generic")]);
  const env = r.daemonSets[0]?.spec.template.spec.containers[0]?.env ?? [];
  assert.deepEqual(env.filter((e) => e.name === "NVIDIA_VISIBLE_DEVICES"), [{ name: "NVIDIA_VISIBLE_DEVICES", value: "void" }]);
});

test("pod spec essentials of a driver DaemonSet", () => {
  const r = render({ version: "550.54.15", manager: { repository: "nvcr.io/nvidia/cloud-native", image: "k8s-driver-manager", version: "v0.8.0" } }, [
    node("a", "5.15.0-69-generic"),
  ]);
  const ds = r.daemonSets[0];
  assert.ok(ds);
  assert.equal(ds.metadata.namespace, "gpu-operator");
  assert.deepEqual(ds.metadata.labels, {
    app: "nvidia-driver-daemonset",
    "app.kubernetes.io/managed-by": "gpuop",
    "nvidia.com/precompiled": "false",
    [POOL_LABEL]: ds.metadata.name,
  });
  assert.deepEqual(ds.spec.template.metadata.labels, ds.metadata.labels);
  assert.deepEqual(ds.spec.selector, { matchLabels: { app: "nvidia-driver-daemonset", [POOL_LABEL]: ds.metadata.name } });
  assert.deepEqual(ds.metadata.ownerReferences, [
    { apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", name: "cluster-policy", uid: "0b5e3c43-policy-uid", controller: true, blockOwnerDeletion: true },
  ]);
  assert.deepEqual(ds.spec.updateStrategy, { type: "OnDelete" });
  const pod = ds.spec.template.spec;
  assert.equal(pod.priorityClassName, "system-node-critical");
  assert.equal(pod.hostPID, true);
  assert.equal(pod.serviceAccountName, "nvidia-driver");
  assert.deepEqual(pod.tolerations, [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]);
  const c = pod.containers[0];
  assert.ok(c);
  assert.equal(c.securityContext.privileged, true);
  assert.equal(c.imagePullPolicy, "IfNotPresent");
  const mounts = Object.fromEntries(c.volumeMounts.map((m) => [m.mountPath, m]));
  assert.equal(mounts["/run/nvidia"]?.mountPropagation, "Bidirectional");
  for (const path of ["/sys", "/var/log", "/dev/log", "/host-etc/os-release", "/lib/firmware", "/sys/module/firmware_class/parameters/path"]) {
    assert.ok(mounts[path], path);
  }
  const volumes = Object.fromEntries(pod.volumes.map((v) => [v.name, v]));
  for (const m of c.volumeMounts) assert.ok(volumes[m.name], `volume ${m.name}`);
  assert.deepEqual(volumes[mounts["/lib/firmware"]?.name ?? ""], { name: "nv-firmware", hostPath: { path: "/run/nvidia/driver/lib/firmware", type: "DirectoryOrCreate" } });
  assert.deepEqual(volumes[mounts["/host-etc/os-release"]?.name ?? ""], { name: "host-os-release", hostPath: { path: "/etc/os-release" } });
  assert.match(c.startupProbe?.exec.command.join(" ") ?? "", /nvidia-smi.*\.driver-ctr-ready/);
  assert.deepEqual(c.lifecycle?.preStop.exec.command, ["/bin/sh", "-c", "rm -f /run/nvidia/validations/.driver-ctr-ready"]);
  assert.equal(pod.initContainers?.[0]?.name, "k8s-driver-manager");
  assert.equal(pod.initContainers?.[0]?.image, "nvcr.io/nvidia/cloud-native/k8s-driver-manager:v0.8.0");
  for (const m of pod.initContainers?.[0]?.volumeMounts ?? []) assert.ok(volumes[m.name], `volume ${m.name}`);
  // Names unique where server-side apply merges lists by key.
  assert.equal(new Set(pod.volumes.map((v) => v.name)).size, pod.volumes.length);
  assert.equal(new Set(c.volumeMounts.map((m) => m.mountPath)).size, c.volumeMounts.length);
});

test("no manager image, no init container; explicit ownerRef wins; no uid, no owner", () => {
  const nodes = [node("a", "5.15.0-69-generic")];
  assert.equal(render({ version: "550.54.15" }, nodes).daemonSets[0]?.spec.template.spec.initContainers, undefined);
  const owner = { apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", name: "x", uid: "u-1" };
  assert.equal(render({ version: "550.54.15" }, nodes, { ownerRef: owner }).daemonSets[0]?.metadata.ownerReferences?.[0]?.uid, "u-1");
  const p = policy({ version: "550.54.15" });
  delete p.metadata.uid;
  assert.equal(renderDriverDaemonSets({ policy: p, nodes, namespace: "ns" }).daemonSets[0]?.metadata.ownerReferences, undefined);
});

test("selectByPoolLabel: false leaves the pool label out of the node selector", () => {
  const r = render({ version: "550.54.15" }, [node("a", "5.15.0-69-generic")], { selectByPoolLabel: false });
  assert.equal(r.daemonSets[0]?.spec.template.spec.nodeSelector[POOL_LABEL], undefined);
  assert.equal(r.daemonSets[0]?.spec.selector.matchLabels[POOL_LABEL], r.daemonSets[0]?.metadata.name);
});

test("nodes that must not get a driver, and nodes with problems", () => {
  const noNfd: NodeLike = { metadata: { name: "bare", labels: { [NFD_NVIDIA_PCI_LABEL]: "true" } } };
  const r = render({ version: "550.54.15" }, [
    node("ok", "5.15.0-69-generic"),
    node("off", "5.15.0-69-generic", "ubuntu", "22.04", { [DEPLOY_OPERANDS_LABEL]: "false" }),
    node("pre", "5.15.0-69-generic", "ubuntu", "22.04", { [DEPLOY_DRIVER_LABEL]: "pre-installed" }),
    node("paused", "5.15.0-69-generic", "ubuntu", "22.04", { [DEPLOY_DRIVER_LABEL]: "paused-for-driver-upgrade" }),
    noNfd,
  ]);
  assert.deepEqual(r.pools.map((p) => p.nodes), [["ok"]]);
  assert.equal(r.problems.length, 1);
  assert.equal(r.problems[0]?.node, "bare");
  assert.match(r.problems[0]?.message ?? "", /kernel-version\.full/);
});

test("driver disabled or no GPU nodes: nothing to render", () => {
  assert.deepEqual(render({ enabled: false, version: "550.54.15" }, [node("a", "5.15.0-69-generic")]).daemonSets, []);
  assert.deepEqual(render({ version: "550.54.15" }, []), { daemonSets: [], pools: [], problems: [] });
});

test("a policy that cannot be rendered throws a UserError saying what to set", () => {
  const nodes = [node("a", "5.15.0-69-generic")];
  assert.throws(() => render({}, nodes), /spec\.driver\.version is not set/);
  assert.throws(() => render({ usePrecompiled: true, version: "525.105.17" }, nodes), /use 525/);
  assert.throws(() => render({ version: "550.54.15", repository: "NVCR.io/Nvidia" }, nodes), /lower case/);
});

test("an empty repository takes image as the full name", () => {
  const r = render({ repository: "", image: "registry.local:5000/gpu/driver", version: "550.54.15" }, [node("a", "5.15.0-69-generic")]);
  assert.equal(r.daemonSets[0]?.spec.template.spec.containers[0]?.image, "registry.local:5000/gpu/driver:550.54.15-ubuntu22.04");
});

test("output is deterministic: node order and key order do not matter", () => {
  const nodes = [node("c", "6.8.0-45-generic", "ubuntu", "24.04"), node("a", "5.15.0-69-generic"), node("b", "5.15.0-70-generic")];
  for (const usePrecompiled of [false, true]) {
    const driver = { usePrecompiled, version: usePrecompiled ? "550" : "550.54.15" };
    const one = render(driver, nodes);
    const two = render(driver, [...nodes].reverse());
    assert.deepEqual(two, one);
    assert.equal(JSON.stringify(two), JSON.stringify(one));
  }
  assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: undefined }] }), '{"a":[{"d":2}],"b":1}');
});

const kernelArb = fc.constantFrom(
  "5.15.0-69-generic",
  "5.15.0-70-generic",
  "5.15.0-105-generic",
  "6.8.0-45-generic",
  "6.8.0-1046-azure-fde",
  "6.8.0-1049-nvidia-64k",
  "5.14.0-427.13.1.el9_4.x86_64",
  "5.14.0-427.13.1.el9_4.aarch64",
);
const osArb = fc.constantFrom(["ubuntu", "22.04"], ["ubuntu", "24.04"], ["ubuntu", "20.04"], ["rhel", "9.4"], ["rhel", "9.2"], ["rhel", "8.10"], ["rocky", "9.4"]);
const deployArb = fc.constantFrom(undefined, undefined, undefined, "true", "false", "pre-installed", "paused-for-driver-upgrade");
const nodesArb = fc
  .uniqueArray(
    fc.record({ name: fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/), kernel: kernelArb, os: osArb, deploy: deployArb, operandsOff: fc.boolean(), nfd: fc.boolean() }),
    { selector: (n) => n.name, maxLength: 25 },
  )
  .map((specs) =>
    specs.map((s) => {
      const extra: Record<string, string> = {};
      if (s.deploy !== undefined) extra[DEPLOY_DRIVER_LABEL] = s.deploy;
      if (s.operandsOff) extra[DEPLOY_OPERANDS_LABEL] = "false";
      if (s.nfd) return node(s.name, s.kernel, s.os[0], s.os[1], extra);
      // No NFD: a cloud's accelerator label marks the GPU node; kernel and OS come from nodeInfo.
      return nodeWithoutNfd(s.name, s.kernel, s.os[0], s.os[1], { "cloud.google.com/gke-accelerator": "nvidia-l4", ...extra });
    }),
  );

test("property: every deployable GPU node is selected by exactly one DaemonSet; names are unique, valid names and label values", () => {
  fc.assert(
    fc.property(nodesArb, fc.boolean(), fc.boolean(), (allNodes, usePrecompiled, byPool) => {
      // Without the pool label only NFD's labels can select a node: nodes without them need it.
      const nodes = byPool ? allNodes : allNodes.filter((n) => n.metadata.labels?.[NFD_KERNEL_LABEL] !== undefined);
      const r = render({ usePrecompiled, version: usePrecompiled ? "550" : "550.54.15" }, nodes, { selectByPoolLabel: byPool });
      const names = r.daemonSets.map((d) => d.metadata.name);
      assert.equal(new Set(names).size, names.length);
      // Object names are DNS subdomains (NVIDIA's contain dots) and double as pool label values.
      for (const name of names) assert.ok(isDnsSubdomain(name) && isLabelValue(name), name);
      assert.deepEqual(r.pools.map((p) => p.name), names);
      const poolOf = new Map(r.pools.flatMap((p) => p.nodes.map((n) => [n, p.name] as const)));
      for (const n of nodes) {
        const labels = n.metadata.labels ?? {};
        const deployable = labels[DEPLOY_OPERANDS_LABEL] !== "false" && (labels[DEPLOY_DRIVER_LABEL] ?? "true") === "true";
        const name = n.metadata.name ?? "";
        assert.equal(poolOf.has(name), deployable, name);
        const selecting = r.daemonSets.filter((ds) => selects(ds, labelled(n, poolOf.get(name))));
        if (deployable) {
          assert.deepEqual(selecting.map((d) => d.metadata.name), [poolOf.get(name)], name);
          // In the upgrade's restart step no DaemonSet, of any pool, runs a pod on the node (ADR 0005).
          const restarting = { ...labelled(n, poolOf.get(name)), "nvidia.com/gpu-driver-upgrade-state": "pod-restart-required" };
          assert.deepEqual(r.daemonSets.filter((ds) => selects(ds, restarting)), [], name);
          assert.equal(selects(selecting[0]!, { ...labelled(n, poolOf.get(name)), "nvidia.com/gpu-driver-upgrade-state": "validation-required" }), true, name);
          const image = selecting[0]?.spec.template.spec.containers[0]?.image ?? "";
          assert.ok(image.endsWith(usePrecompiled ? `-${labels[NFD_KERNEL_LABEL] ?? n.status?.nodeInfo?.kernelVersion}-${r.pools.find((p) => p.name === poolOf.get(name))?.osTag}` : `-${r.pools.find((p) => p.name === poolOf.get(name))?.osTag}`), image);
        } else {
          assert.deepEqual(selecting, [], name);
        }
      }
      // Rendering again from shuffled input gives the same objects.
      assert.deepEqual(render({ usePrecompiled, version: usePrecompiled ? "550" : "550.54.15" }, [...nodes].reverse(), { selectByPoolLabel: byPool }), r);
    }),
    { numRuns: 200 },
  );
});

test("nothing is rendered that the apiserver would drop or rewrite (so a steady state compares equal)", () => {
  const r = render(
    {
      version: "550.54.15",
      env: [{ name: "EMPTY", value: "" }, { name: "UNSET" }],
      resources: { requests: { cpu: 1 } },
      startupProbe: { initialDelaySeconds: 0 },
      manager: { image: "k8s-driver-manager", repository: "nvcr.io/nvidia/cloud-native", version: "v0.8.0" },
      upgradePolicy: { drain: { enable: true, podSelector: "" } },
    },
    [node("a", "5.15.0-69-generic")],
  );
  const found: string[] = [];
  const walk = (v: unknown, path: string) => {
    if (v === "" || v === 0 || v === undefined || v === null) found.push(path);
    else if (typeof v === "number" && path.includes("resources")) found.push(path);
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`));
    else if (typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
  };
  walk(r.daemonSets[0]?.spec, "spec");
  assert.deepEqual(found, []);
  const env = r.daemonSets[0]?.spec.template.spec.containers[0]?.env ?? [];
  assert.deepEqual(env.filter((e) => e.name === "EMPTY" || e.name === "UNSET"), [{ name: "EMPTY" }, { name: "UNSET" }]);
});

test("the driver manager's drain settings come from upgradePolicy.drain, with NVIDIA's defaults", () => {
  const manager = { repository: "nvcr.io/nvidia/cloud-native", image: "k8s-driver-manager", version: "v0.8.0" };
  const drainEnv = (upgradePolicy?: DriverSpec["upgradePolicy"]) => {
    const r = render({ version: "550.54.15", manager, ...(upgradePolicy ? { upgradePolicy } : {}) }, [node("a", "5.15.0-69-generic")]);
    const env = r.daemonSets[0]?.spec.template.spec.initContainers?.[0]?.env ?? [];
    return Object.fromEntries(env.filter((e) => /DRAIN|EVICTION/.test(e.name)).map((e) => [e.name, e.value]));
  };
  // Not asked to drain: GPU pods are evicted, the node is not drained.
  // An empty selector is rendered without a value, as the apiserver stores it.
  const defaults = { ENABLE_GPU_POD_EVICTION: "true", ENABLE_AUTO_DRAIN: "false", DRAIN_USE_FORCE: "false", DRAIN_POD_SELECTOR_LABEL: undefined, DRAIN_TIMEOUT_SECONDS: "300s", DRAIN_DELETE_EMPTYDIR_DATA: "false" };
  assert.deepEqual(drainEnv(), defaults);
  assert.deepEqual(drainEnv({ autoUpgrade: true }), defaults);
  assert.deepEqual(drainEnv({ drain: {} }), defaults);
  // Each setting different from its default, and the booleans from each other.
  assert.deepEqual(drainEnv({ drain: { force: true, deleteEmptyDir: true } }), { ...defaults, DRAIN_USE_FORCE: "true", DRAIN_DELETE_EMPTYDIR_DATA: "true" });
  assert.deepEqual(drainEnv({ drain: { enable: true, force: false, podSelector: "app=batch", timeoutSeconds: 45, deleteEmptyDir: true } }), {
    ENABLE_GPU_POD_EVICTION: "true",
    ENABLE_AUTO_DRAIN: "true",
    DRAIN_USE_FORCE: "false",
    DRAIN_POD_SELECTOR_LABEL: "app=batch",
    DRAIN_TIMEOUT_SECONDS: "45s",
    DRAIN_DELETE_EMPTYDIR_DATA: "true",
  });
  // The policy's own manager env wins over the rendered value.
  const m = render({ version: "550.54.15", manager: { ...manager, env: [{ name: "DRAIN_TIMEOUT_SECONDS", value: "0s" }] } }, [node("a", "5.15.0-69-generic")]);
  assert.deepEqual(m.daemonSets[0]?.spec.template.spec.initContainers?.[0]?.env?.filter((e) => e.name === "DRAIN_TIMEOUT_SECONDS"), [{ name: "DRAIN_TIMEOUT_SECONDS", value: "0s" }]);
});

test("the driver pod: volumes, mounts, security and probes as NVIDIA's operator renders them", () => {
  const r = render({ version: "550.54.15", manager: { repository: "nvcr.io/nvidia/cloud-native", image: "k8s-driver-manager", version: "v0.8.0" }, readinessProbe: { periodSeconds: 7 } }, [node("a", "5.15.0-69-generic")]);
  const ds = r.daemonSets[0]!;
  assert.equal(ds.apiVersion, "apps/v1");
  assert.equal(ds.kind, "DaemonSet");
  assert.deepEqual(ds.spec.template.metadata.annotations, { "kubectl.kubernetes.io/default-container": DRIVER_CONTAINER, [TEMPLATE_HASH_ANNOTATION]: driverTemplateHash(ds.spec.template) });
  const pod = ds.spec.template.spec;
  assert.deepEqual(pod.volumes.map((v) => ["hostPath" in v ? [v.name, v.hostPath.path, v.hostPath.type] : [v.name]].flat()), [
    ["run-nvidia", "/run/nvidia", "DirectoryOrCreate"],
    ["var-log", "/var/log", undefined],
    ["dev-log", "/dev/log", undefined],
    ["host-os-release", "/etc/os-release", undefined],
    ["host-root", "/", undefined],
    ["host-sys", "/sys", "Directory"],
    ["firmware-search-path", "/sys/module/firmware_class/parameters/path", undefined],
    ["nv-firmware", "/run/nvidia/driver/lib/firmware", "DirectoryOrCreate"],
    // The API token, mounted into the manager init container only (docs/security.md).
    ["driver-manager-token"],
  ]);
  const c = pod.containers[0]!;
  const readOnly = (mounts: { name: string; readOnly?: boolean }[]) => mounts.filter((m) => m.readOnly).map((m) => m.name);
  assert.deepEqual(readOnly(c.volumeMounts), ["host-os-release", "host-root"]);
  assert.deepEqual(c.args, ["init"]);
  assert.deepEqual(c.securityContext, { privileged: true, seLinuxOptions: { level: "s0" } });
  assert.deepEqual(c.startupProbe?.exec.command, ["/bin/sh", "-c", "test -e /sys/module/nvidia/refcnt && nvidia-smi >/dev/null && mkdir -p /run/nvidia/validations && touch /run/nvidia/validations/.driver-ctr-ready"]);
  assert.deepEqual(c.readinessProbe?.exec.command, ["/bin/sh", "-c", "test -e /run/nvidia/validations/.driver-ctr-ready"]);
  assert.equal(c.readinessProbe?.periodSeconds, 7);
  assert.equal(c.livenessProbe, undefined);
  const live = render({ version: "550.54.15", livenessProbe: { periodSeconds: 9 } }, [node("a", "5.15.0-69-generic")]).daemonSets[0]!.spec.template.spec.containers[0]!.livenessProbe;
  assert.deepEqual([live?.exec.command, live?.periodSeconds], [c.startupProbe?.exec.command, 9]);
  assert.equal((c.env ?? []).some((e) => e.name === "GPU_DIRECT_RDMA_ENABLED"), false);
  assert.equal(pod.imagePullSecrets, undefined);
  const m = pod.initContainers![0]!;
  assert.deepEqual([m.command, m.args, m.securityContext], [["driver-manager"], ["uninstall_driver"], { privileged: true }]);
  assert.deepEqual((m.env ?? []).find((e) => e.name === "NVIDIA_VISIBLE_DEVICES"), { name: "NVIDIA_VISIBLE_DEVICES", value: "void" });
  assert.deepEqual(m.volumeMounts, [
    { name: "run-nvidia", mountPath: "/run/nvidia", mountPropagation: "Bidirectional" },
    { name: "host-root", mountPath: "/host", readOnly: true, mountPropagation: "HostToContainer" },
    { name: "host-sys", mountPath: "/sys" },
    { name: "driver-manager-token", mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true },
  ]);
  assert.equal(pod.automountServiceAccountToken, false);
});

test("GPUDirect RDMA, a kernel module config, extra args", () => {
  const manager = { repository: "nvcr.io/nvidia/cloud-native", image: "k8s-driver-manager", version: "v0.8.0" };
  const r = render({ version: "550.54.15", manager, rdma: { enabled: true, useHostMofed: true }, kernelModuleConfig: { name: "modules" }, args: ["--debug"] }, [node("a", "5.15.0-69-generic")]);
  const pod = r.daemonSets[0]!.spec.template.spec;
  const c = pod.containers[0]!;
  assert.deepEqual(pod.volumes.find((v) => v.name === "run-mellanox-drivers"), { name: "run-mellanox-drivers", hostPath: { path: "/run/mellanox/drivers", type: "DirectoryOrCreate" } });
  const mellanox = { name: "run-mellanox-drivers", mountPath: "/run/mellanox/drivers", mountPropagation: "HostToContainer" };
  assert.deepEqual(c.volumeMounts.find((x) => x.name === "run-mellanox-drivers"), mellanox);
  assert.deepEqual(pod.initContainers?.[0]?.volumeMounts.find((x) => x.name === "run-mellanox-drivers"), mellanox);
  assert.deepEqual(c.volumeMounts.find((x) => x.name === "kernel-module-config"), { name: "kernel-module-config", mountPath: "/drivers", readOnly: true });
  assert.deepEqual((c.env ?? []).filter((e) => /RDMA|MOFED/.test(e.name)), [{ name: "GPU_DIRECT_RDMA_ENABLED", value: "true" }, { name: "USE_HOST_MOFED", value: "true" }]);
  assert.deepEqual(c.args, ["init", "--debug"]);
  // RDMA without the host's MOFED.
  const own = render({ version: "550.54.15", rdma: { enabled: true } }, [node("a", "5.15.0-69-generic")]).daemonSets[0]!.spec.template.spec.containers[0]!;
  assert.deepEqual((own.env ?? []).filter((e) => /RDMA|MOFED/.test(e.name)), [{ name: "GPU_DIRECT_RDMA_ENABLED", value: "true" }]);
  // Disabled RDMA adds nothing.
  const off = render({ version: "550.54.15", manager, rdma: { enabled: false, useHostMofed: true } }, [node("a", "5.15.0-69-generic")]).daemonSets[0]!.spec.template.spec;
  assert.equal(off.volumes.some((v) => v.name === "run-mellanox-drivers"), false);
  assert.equal(off.initContainers?.[0]?.volumeMounts.some((x) => x.name === "run-mellanox-drivers"), false);
  assert.equal((off.containers[0]!.env ?? []).some((e) => /RDMA|MOFED/.test(e.name)), false);
});

test("pull secrets: the driver's and the manager's, once each, empty names dropped", () => {
  const secrets = (driver: DriverSpec) => render({ version: "550.54.15", ...driver }, [node("a", "5.15.0-69-generic")]).daemonSets[0]!.spec.template.spec.imagePullSecrets;
  const manager = { repository: "nvcr.io/nvidia/cloud-native", image: "k8s-driver-manager", version: "v0.8.0" };
  assert.deepEqual(secrets({ imagePullSecrets: ["ngc", "", "mirror"], manager: { ...manager, imagePullSecrets: ["mirror", "mgr"] } }), [{ name: "ngc" }, { name: "mirror" }, { name: "mgr" }]);
  assert.deepEqual(secrets({ manager: { ...manager, imagePullSecrets: ["mgr"] } }), [{ name: "mgr" }]);
  assert.deepEqual(secrets({ imagePullSecrets: ["ngc"] }), [{ name: "ngc" }]);
  assert.equal(secrets({ imagePullSecrets: [""] }), undefined);
});

test("the manager image: a digest version, and a bad name refused", () => {
  const digest = `sha256:${"b".repeat(64)}`;
  const init = (m: NonNullable<DriverSpec["manager"]>) => render({ version: "550.54.15", manager: m }, [node("a", "5.15.0-69-generic")]).daemonSets[0]!.spec.template.spec.initContainers?.[0];
  assert.equal(init({ repository: "nvcr.io/nvidia/cloud-native", image: "k8s-driver-manager", version: digest })?.image, `nvcr.io/nvidia/cloud-native/k8s-driver-manager@${digest}`);
  assert.equal(init({ repository: "nvcr.io/nvidia/cloud-native", image: "k8s-driver-manager" })?.image, "nvcr.io/nvidia/cloud-native/k8s-driver-manager");
  assert.throws(() => init({ repository: "nvcr.io/nvidia/cloud-native", image: "K8s Driver Manager", version: "v0.8.0" }), /K8s Driver Manager|lower case|not a valid/i);
});

test("a conventional version that is neither full, branch nor digest is refused", () => {
  assert.throws(() => render({ version: "latest" }, [node("a", "5.15.0-69-generic")]), /"latest" is not a full driver version/);
});

test("the owner reference names the policy's own kind and version, with defaults when it has none", () => {
  const p = policy({ version: "550.54.15" });
  p.apiVersion = "nvidia.com/v1alpha1";
  p.kind = "ClusterPolicyOld";
  const own = renderDriverDaemonSets({ policy: p, nodes: [node("a", "5.15.0-69-generic")], namespace: "ns" }).daemonSets[0]!.metadata.ownerReferences?.[0];
  assert.deepEqual([own?.apiVersion, own?.kind], ["nvidia.com/v1alpha1", "ClusterPolicyOld"]);
  delete p.apiVersion;
  delete p.kind;
  const def = renderDriverDaemonSets({ policy: p, nodes: [node("a", "5.15.0-69-generic")], namespace: "ns" }).daemonSets[0]!.metadata.ownerReferences?.[0];
  assert.deepEqual([def?.apiVersion, def?.kind], ["nvidia.com/v1", "ClusterPolicy"]);
});

test("a major-version-only OS pool selects its nodes' versions, sorted", () => {
  // Nodes are taken in name order: make that differ from version order.
  const r = render({ usePrecompiled: true, version: "550" }, [node("a", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4"), node("b", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.2")]);
  assert.deepEqual(r.daemonSets[0]?.spec.template.spec.affinity?.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]?.matchExpressions[0]?.values, ["9.2", "9.4"]);
});

test("one normalized policy rendered again and again: each result equals a fresh render, the same inputs give the same frozen objects", () => {
  const driver: DriverSpec = { usePrecompiled: true, version: "550" };
  const normalized = normalizePolicy(policy(driver));
  const el9 = "5.14.0-427.13.1.el9_4.x86_64";
  const inputs: [NodeLike[], Partial<RenderInput>][] = [
    [[node("a", el9, "rhel", "9.4")], {}],
    // Only the nodes' OS versions differ: the affinity's values must follow them.
    [[node("a", el9, "rhel", "9.4"), node("b", el9, "rhel", "9.2")], {}],
    [[node("a", "5.15.0-69-generic")], {}],
    // A node without NFD labels joins the pool: it is then selected by the pool label alone.
    [[node("a", "5.15.0-69-generic"), nodeWithoutNfd("c", "5.15.0-69-generic", "ubuntu", "22.04", { "cloud.google.com/gke-accelerator": "nvidia-tesla-t4" })], {}],
    [[node("a", el9, "rhel", "9.4")], { requiredNodeLabels: { "example.com/gpu": "yes" } }],
    [[node("a", el9, "rhel", "9.4")], { namespace: "other" }],
    [[node("a", el9, "rhel", "9.4")], { ownerRef: { apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", name: "other", uid: "u-2" } }],
    [[node("a", el9, "rhel", "9.4")], { selectByPoolLabel: false }],
    [[node("a", "5.15.0-69-generic"), node("b", "6.8.0-1046-azure-fde", "ubuntu", "24.04")], {}],
  ];
  const first = renderDriverDaemonSets({ policy: normalized, nodes: inputs[0]![0], namespace: "gpu-operator" });
  for (const [nodes, extra] of inputs) {
    const memoized = renderDriverDaemonSets({ policy: normalized, nodes, namespace: "gpu-operator", ...extra });
    assert.deepEqual(memoized, renderDriverDaemonSets({ policy: policy(driver), nodes, namespace: "gpu-operator", ...extra }));
    for (const ds of memoized.daemonSets) assert.ok(Object.isFrozen(ds.spec.template.spec.nodeSelector));
  }
  const again = renderDriverDaemonSets({ policy: normalized, nodes: inputs[0]![0], namespace: "gpu-operator" });
  assert.equal(again.daemonSets[0], first.daemonSets[0]);
});

// Surviving mutants in render.ts, explained:
// - compare(): `<`/`>` -> `<=`/`>=`, and dropping the `a > b` case: the names and versions sorted
//   are distinct, and V8's sort only asks whether the result is below zero.
// - groupIntoPools `kernel !== undefined ? { kernel } : {}` -> always: the pool copies the kernel
//   only when it is defined, so an undefined kernel key never leaves the function.
// - `driver.rdma?.useHostMofed` -> `driver.rdma.useHostMofed`: it is read only when RDMA is enabled.
// - driverImage's `throw new Error("precompiled pool without a kernel")` and the branch-path OS tag
//   check: precompiled pools always have a kernel, and node facts only carry valid OS tags.

test("nodes without NFD labels: kernel and OS from nodeInfo, selected by the pool label alone; NFD pools keep their selectors", () => {
  const gke = { "cloud.google.com/gke-accelerator": "nvidia-tesla-t4" };
  const nodes = [
    node("nfd-a", "5.15.0-69-generic"),
    nodeWithoutNfd("bare-b", "5.15.0-69-generic", "ubuntu", "22.04", gke),
    nodeWithoutNfd("bare-c", "6.8.0-1046-azure-fde", "ubuntu", "24.04", gke),
  ];
  const conventional = render({ version: "550.54.15" }, nodes);
  assert.deepEqual(summary(conventional), [
    { name: "nvidia-driver-daemonset-ubuntu22.04", image: "nvcr.io/nvidia/driver:550.54.15-ubuntu22.04" },
    { name: "nvidia-driver-daemonset-ubuntu24.04", image: "nvcr.io/nvidia/driver:550.54.15-ubuntu24.04" },
  ]);
  assert.deepEqual(conventional.daemonSets.map((d) => d.spec.template.spec.nodeSelector), [
    { [DEPLOY_DRIVER_LABEL]: "true", [POOL_LABEL]: "nvidia-driver-daemonset-ubuntu22.04" },
    { [DEPLOY_DRIVER_LABEL]: "true", [POOL_LABEL]: "nvidia-driver-daemonset-ubuntu24.04" },
  ]);
  const precompiled = render({ usePrecompiled: true, version: "550" }, nodes);
  assert.deepEqual(summary(precompiled).map((s) => s.image), [
    "nvcr.io/nvidia/driver:550-5.15.0-69-generic-ubuntu22.04",
    "nvcr.io/nvidia/driver:550-6.8.0-1046-azure-fde-ubuntu24.04",
  ]);
  const nfdOnly = render({ version: "550.54.15" }, [node("nfd-a", "5.15.0-69-generic")]);
  assert.deepEqual(nfdOnly.daemonSets[0]?.spec.template.spec.nodeSelector, {
    [NFD_OS_ID_LABEL]: "ubuntu",
    [NFD_OS_VERSION_ID_LABEL]: "22.04",
    [DEPLOY_DRIVER_LABEL]: "true",
    [POOL_LABEL]: "nvidia-driver-daemonset-ubuntu22.04",
  });
});

test("driver.hostNetwork puts the driver pods in the host's network with cluster DNS; unset changes nothing", () => {
  const on = render({ version: "550.54.15", hostNetwork: true }, [node("a", "5.15.0-69-generic")]).daemonSets[0]!.spec.template.spec;
  assert.equal(on.hostNetwork, true);
  assert.equal(on.dnsPolicy, "ClusterFirstWithHostNet");
  const off = render({ version: "550.54.15", hostNetwork: false }, [node("a", "5.15.0-69-generic")]).daemonSets[0]!;
  assert.equal(off.spec.template.spec.hostNetwork, undefined);
  assert.deepEqual(off, render({ version: "550.54.15" }, [node("a", "5.15.0-69-generic")]).daemonSets[0]!);
});
