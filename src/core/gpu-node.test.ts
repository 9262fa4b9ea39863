import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DEPLOY_DRIVER_LABEL,
  DEPLOY_OPERANDS_LABEL,
  GPU_PRESENT_LABEL,
  NFD_KERNEL_LABEL,
  NFD_NVIDIA_PCI_LABEL,
  classifyNodes,
  desiredNodeLabels,
  gpuNodeFacts,
  isGpuNode,
  isNodeProblem,
  CLOUD_GPU_LABELS,
  type NodeLike,
} from "./gpu-node.ts";
import { NFD_OS_ID_LABEL, NFD_OS_VERSION_ID_LABEL } from "./os.ts";

/** The operands' deploy labels gpuop sets on a GPU node with the driver's (NVIDIA's names). */
const OPERAND_DEPLOY = Object.fromEntries(["container-toolkit", "operator-validator", "device-plugin", "gpu-feature-discovery", "dcgm-exporter"].map((k) => [`nvidia.com/gpu.deploy.${k}`, "true"]));
const TOOLKIT_DEPLOY = "nvidia.com/gpu.deploy.container-toolkit";
const GFD_DEPLOY = "nvidia.com/gpu.deploy.gpu-feature-discovery";

function gpuNode(name: string, extra: Record<string, string> = {}, ready = true): NodeLike {
  return {
    metadata: {
      name,
      labels: {
        [NFD_NVIDIA_PCI_LABEL]: "true",
        [NFD_KERNEL_LABEL]: "5.15.0-69-generic",
        [NFD_OS_ID_LABEL]: "ubuntu",
        [NFD_OS_VERSION_ID_LABEL]: "22.04",
        "kubernetes.io/arch": "amd64",
        ...extra,
      },
    },
    status: { conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
  };
}

test("isGpuNode: NFD's NVIDIA PCI label or gpu.present", () => {
  assert.equal(isGpuNode(gpuNode("a")), true);
  assert.equal(isGpuNode({ metadata: { name: "b", labels: { [GPU_PRESENT_LABEL]: "true" } } }), true);
  assert.equal(isGpuNode({ metadata: { name: "c", labels: { [NFD_NVIDIA_PCI_LABEL]: "false" } } }), false);
  assert.equal(isGpuNode({ metadata: { name: "d" } }), false);
});

test("gpuNodeFacts reads kernel, OS tag, arch, readiness and deploy state", () => {
  const f = gpuNodeFacts(gpuNode("gpu-1", {}, false));
  assert.deepEqual(f, {
    name: "gpu-1",
    kernel: "5.15.0-69-generic",
    osTag: "ubuntu22.04",
    osVersionId: "22.04",
    arch: "amd64",
    nfd: true,
    deploy: "true",
    operandsDisabled: false,
    ready: false,
    deployable: true,
  });
  const rhel = gpuNodeFacts(
    gpuNode("gpu-2", {
      [NFD_KERNEL_LABEL]: "5.14.0-687.39.1.el9_8.x86_64",
      [NFD_OS_ID_LABEL]: "rhel",
      [NFD_OS_VERSION_ID_LABEL]: "9.4",
      [DEPLOY_DRIVER_LABEL]: "pre-installed",
    }),
  );
  assert.ok(!isNodeProblem(rhel));
  assert.equal(rhel.osTag, "rhel9");
  assert.equal(rhel.deploy, "pre-installed");
  assert.equal(rhel.deployable, false);
  assert.equal(rhel.ready, true);
});

test("gpuNodeFacts falls back to the node status for the architecture", () => {
  const n = gpuNode("a");
  delete n.metadata.labels?.["kubernetes.io/arch"];
  n.status = { nodeInfo: { architecture: "arm64" } };
  const f = gpuNodeFacts(n);
  assert.ok(!isNodeProblem(f));
  assert.equal(f.arch, "arm64");
  assert.equal(f.ready, false);
});

test("gpuNodeFacts names the missing NFD labels", () => {
  const n = gpuNode("gpu-x");
  delete n.metadata.labels?.[NFD_KERNEL_LABEL];
  delete n.metadata.labels?.[NFD_OS_VERSION_ID_LABEL];
  const f = gpuNodeFacts(n);
  assert.ok(isNodeProblem(f));
  assert.equal(f.name, "gpu-x");
  assert.match(f.problem, /gpu-x/);
  assert.match(f.problem, /kernel-version\.full/);
  assert.match(f.problem, /system-os_release\.VERSION_ID/);
  assert.match(f.problem, /Node Feature Discovery/);
});

test("gpuNodeFacts reports unusable label values", () => {
  const f = gpuNodeFacts(gpuNode("gpu-y", { [NFD_OS_VERSION_ID_LABEL]: "jammy" }));
  assert.ok(isNodeProblem(f));
  assert.match(f.problem, /gpu-y.*VERSION_ID="jammy"/);
  const k = gpuNodeFacts(gpuNode("gpu-z", { [NFD_KERNEL_LABEL]: "not a kernel" }));
  assert.ok(isNodeProblem(k));
  assert.match(k.problem, /gpu-z.*not a kernel/);
});

test("operands=false: not deployable, deploy label removed only when it is true", () => {
  const off = gpuNode("a", { [DEPLOY_OPERANDS_LABEL]: "false" });
  const f = gpuNodeFacts(off);
  assert.ok(!isNodeProblem(f));
  assert.equal(f.operandsDisabled, true);
  assert.equal(f.deployable, false);
  assert.deepEqual(desiredNodeLabels(off), { [GPU_PRESENT_LABEL]: "true" });

  const offTrue = gpuNode("b", { [DEPLOY_OPERANDS_LABEL]: "false", [DEPLOY_DRIVER_LABEL]: "true", [GPU_PRESENT_LABEL]: "true", [TOOLKIT_DEPLOY]: "true", [GFD_DEPLOY]: "false" });
  // Every "true" deploy label goes, the driver's and the operands'; another value stays.
  assert.deepEqual(desiredNodeLabels(offTrue), { [DEPLOY_DRIVER_LABEL]: null, [TOOLKIT_DEPLOY]: null });
  const g = gpuNodeFacts(offTrue);
  assert.ok(!isNodeProblem(g));
  assert.equal(g.deploy, "false");
  assert.equal(g.deployable, false);

  const offPre = gpuNode("c", { [DEPLOY_OPERANDS_LABEL]: "false", [DEPLOY_DRIVER_LABEL]: "pre-installed", [GPU_PRESENT_LABEL]: "true" });
  assert.deepEqual(desiredNodeLabels(offPre), {});
});

test("desiredNodeLabels adds gpu.present and every deploy label (driver and operands) to a fresh GPU node in one patch, then nothing", () => {
  const n = gpuNode("a");
  const patch = desiredNodeLabels(n);
  assert.deepEqual(patch, { [GPU_PRESENT_LABEL]: "true", [DEPLOY_DRIVER_LABEL]: "true", ...OPERAND_DEPLOY });
  const labelled = { ...n, metadata: { ...n.metadata, labels: { ...n.metadata.labels, ...(patch as Record<string, string>) } } };
  assert.deepEqual(desiredNodeLabels(labelled), {});
});

test("desiredNodeLabels keeps every existing deploy value", () => {
  for (const v of ["false", "pre-installed", "paused-for-driver-upgrade", "true", "something-else"]) {
    assert.deepEqual(desiredNodeLabels(gpuNode("a", { [GPU_PRESENT_LABEL]: "true", [DEPLOY_DRIVER_LABEL]: v, ...OPERAND_DEPLOY })), {}, v);
    // An operand's deploy label set by an admin is kept too; only the missing ones are added.
    assert.deepEqual(desiredNodeLabels(gpuNode("a", { [GPU_PRESENT_LABEL]: "true", [DEPLOY_DRIVER_LABEL]: "true", ...OPERAND_DEPLOY, [GFD_DEPLOY]: v, [TOOLKIT_DEPLOY]: v })), {}, v);
  }
  assert.deepEqual(desiredNodeLabels(gpuNode("a", { [DEPLOY_DRIVER_LABEL]: "paused-for-driver-upgrade", ...OPERAND_DEPLOY, [TOOLKIT_DEPLOY]: "false" })), {
    [GPU_PRESENT_LABEL]: "true",
  });
  const { [GFD_DEPLOY]: _g, ...withoutGfd } = OPERAND_DEPLOY;
  assert.deepEqual(desiredNodeLabels(gpuNode("a", { [GPU_PRESENT_LABEL]: "true", [DEPLOY_DRIVER_LABEL]: "true", ...withoutGfd, [TOOLKIT_DEPLOY]: "false" })), { [GFD_DEPLOY]: "true" });
});

test("desiredNodeLabels leaves non-GPU nodes alone", () => {
  assert.deepEqual(desiredNodeLabels({ metadata: { name: "cpu", labels: { [DEPLOY_DRIVER_LABEL]: "true" } } }), {});
  assert.deepEqual(desiredNodeLabels({ metadata: { name: "cpu" } }), {});
});

test("property: applying desiredNodeLabels once reaches a fixed point", () => {
  const value = fc.option(fc.constantFrom("true", "false", "pre-installed", "paused-for-driver-upgrade", "x"), { nil: undefined });
  fc.assert(
    fc.property(value, value, value, value, (pci, present, deploy, operands) => {
      const labels: Record<string, string> = {};
      if (pci !== undefined) labels[NFD_NVIDIA_PCI_LABEL] = pci;
      if (present !== undefined) labels[GPU_PRESENT_LABEL] = present;
      if (deploy !== undefined) labels[DEPLOY_DRIVER_LABEL] = deploy;
      if (operands !== undefined) labels[DEPLOY_OPERANDS_LABEL] = operands;
      const node: NodeLike = { metadata: { name: "n", labels } };
      const patch = desiredNodeLabels(node);
      const after: Record<string, string> = { ...labels };
      for (const [k, v] of Object.entries(patch)) {
        if (v === null) delete after[k];
        else after[k] = v;
      }
      assert.deepEqual(desiredNodeLabels({ metadata: { name: "n", labels: after } }), {});
      // Meaningful values other than "true" are never touched.
      if (deploy !== undefined && deploy !== "true") assert.equal(after[DEPLOY_DRIVER_LABEL], deploy);
      if (operands === "false" && isGpuNode(node)) assert.notEqual(after[DEPLOY_DRIVER_LABEL], "true");
      if (operands === "false" && isGpuNode(node)) for (const k of Object.keys(OPERAND_DEPLOY)) assert.notEqual(after[k], "true", k);
      if (operands !== "false" && isGpuNode(node)) for (const k of Object.keys(OPERAND_DEPLOY)) assert.equal(after[k], "true", k);
    }),
  );
});

test("classifyNodes skips non-GPU nodes and sorts by name", () => {
  const missing = gpuNode("m");
  delete missing.metadata.labels?.[NFD_OS_ID_LABEL];
  const { gpuNodes, problems } = classifyNodes([gpuNode("b"), { metadata: { name: "cpu" } }, missing, gpuNode("a")]);
  assert.deepEqual(gpuNodes.map((n) => n.name), ["a", "b"]);
  assert.deepEqual(problems.map((n) => n.name), ["m"]);
});

test("without NFD labels the kernel, OS and architecture come from status.nodeInfo", () => {
  const bare: NodeLike = {
    metadata: { name: "bare", labels: { [GPU_PRESENT_LABEL]: "true" } },
    status: { nodeInfo: { kernelVersion: "6.8.0-1046-azure-fde", osImage: "Ubuntu 24.04.1 LTS", architecture: "arm64" }, conditions: [{ type: "Ready", status: "True" }] },
  };
  const f = gpuNodeFacts(bare);
  assert.ok(!isNodeProblem(f), JSON.stringify(f));
  assert.deepEqual([f.kernel, f.osTag, f.arch, f.nfd, f.deployable], ["6.8.0-1046-azure-fde", "ubuntu24.04", "arm64", false, true]);
  const rhel = gpuNodeFacts({ ...bare, status: { nodeInfo: { kernelVersion: "5.14.0-427.13.1.el9_4.x86_64", osImage: "Red Hat Enterprise Linux 9.4 (Plow)" } } });
  assert.ok(!isNodeProblem(rhel));
  assert.equal(rhel.osTag, "rhel9");
  // NFD's labels win where both exist.
  const both = gpuNodeFacts(gpuNode("both", {}, true));
  assert.ok(!isNodeProblem(both) && both.nfd);
  const unknown = gpuNodeFacts({ ...bare, status: { nodeInfo: { kernelVersion: "6.1.0-1", osImage: "Container-Optimized OS from Google" } } });
  assert.ok(isNodeProblem(unknown));
  assert.match(unknown.problem, /bare.*"Container-Optimized OS from Google".*Node Feature Discovery/);
  const nothing = gpuNodeFacts({ metadata: { name: "empty", labels: { [GPU_PRESENT_LABEL]: "true" } } });
  assert.ok(isNodeProblem(nothing));
  assert.match(nothing.problem, /nodeInfo.kernelVersion.*nodeInfo.osImage/);
});

test("isGpuNode: managed clouds' accelerator labels and a configured selector find GPU nodes without NFD", () => {
  const labelled = (labels: Record<string, string>) => ({ metadata: { name: "n", labels } });
  assert.equal(isGpuNode(labelled({ "cloud.google.com/gke-accelerator": "nvidia-tesla-t4" })), true);
  assert.equal(isGpuNode(labelled({ "k8s.amazonaws.com/accelerator": "nvidia-tesla-v100" })), true);
  assert.equal(isGpuNode(labelled({ "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia" })), true);
  assert.equal(isGpuNode(labelled({ "karpenter.k8s.aws/instance-gpu-manufacturer": "amd" })), false);
  assert.equal(isGpuNode(labelled({ "kubernetes.azure.com/accelerator": "nvidia" })), true);
  assert.equal(isGpuNode(labelled({ "cloud.google.com/gke-accelerator": "" })), false);
  assert.equal(isGpuNode(labelled({ "eks.amazonaws.com/instance-gpu-manufacturer": "NVIDIA" })), true);
  assert.equal(CLOUD_GPU_LABELS.length, 5);
  const selector = { gpuNodeSelector: { "example.com/pool": "gpu", "example.com/vendor": "nvidia" } };
  assert.equal(isGpuNode(labelled({ "example.com/pool": "gpu", "example.com/vendor": "nvidia" }), selector), true);
  assert.equal(isGpuNode(labelled({ "example.com/pool": "gpu" }), selector), false, "every label of the selector must match");
  assert.equal(isGpuNode(labelled({ "example.com/pool": "gpu", "example.com/vendor": "nvidia" })), false, "no selector configured");
  assert.equal(isGpuNode(labelled({}), { gpuNodeSelector: {} }), false, "an empty selector selects nothing");
  assert.deepEqual(desiredNodeLabels(labelled({ "example.com/pool": "gpu", "example.com/vendor": "nvidia" }), selector), { [GPU_PRESENT_LABEL]: "true", [DEPLOY_DRIVER_LABEL]: "true", ...OPERAND_DEPLOY });
});

test("a node changed in place is classified again, not answered from the last time", () => {
  const node = gpuNode("inplace");
  const first = gpuNodeFacts(node);
  assert.ok(!isNodeProblem(first) && first.kernel === "5.15.0-69-generic" && first.deployable);
  assert.equal(gpuNodeFacts(node), first, "unchanged: the same answer");
  node.metadata.labels![NFD_KERNEL_LABEL] = "5.15.0-70-generic";
  node.metadata.labels![DEPLOY_DRIVER_LABEL] = "false";
  const second = gpuNodeFacts(node);
  assert.ok(!isNodeProblem(second) && second.kernel === "5.15.0-70-generic" && !second.deployable);
});

test("classifyNodes passes facts already worked out through, sorted in with the rest", () => {
  const facts = { name: "a-known", kernel: "6.8.0-40-generic", osTag: "ubuntu24.04", osVersionId: "24.04", nfd: true, arch: "arm64", deploy: "true", operandsDisabled: false, ready: true, deployable: true };
  const { gpuNodes, problems } = classifyNodes([gpuNode("b-node"), facts]);
  assert.deepEqual(gpuNodes.map((n) => n.name), ["a-known", "b-node"]);
  assert.equal(gpuNodes[0], facts, "the same object, not classified again");
  assert.deepEqual(problems, []);
});

test("the label names are NFD's and NVIDIA's", () => {
  assert.deepEqual([NFD_NVIDIA_PCI_LABEL, NFD_KERNEL_LABEL, GPU_PRESENT_LABEL, DEPLOY_DRIVER_LABEL, DEPLOY_OPERANDS_LABEL], [
    "feature.node.kubernetes.io/pci-10de.present",
    "feature.node.kubernetes.io/kernel-version.full",
    "nvidia.com/gpu.present",
    "nvidia.com/gpu.deploy.driver",
    "nvidia.com/gpu.deploy.operands",
  ]);
});

test("cloud accelerator labels: an empty or false value is no GPU; a required value matches in any case", () => {
  const node = (labels: Record<string, string>) => ({ metadata: { name: "n", labels } });
  assert.equal(isGpuNode(node({ "cloud.google.com/gke-accelerator": "" })), false);
  assert.equal(isGpuNode(node({ "cloud.google.com/gke-accelerator": "false" })), false);
  assert.equal(isGpuNode(node({ "cloud.google.com/gke-accelerator": "nvidia-l4" })), true);
  assert.equal(isGpuNode(node({ "karpenter.k8s.aws/instance-gpu-manufacturer": "NVIDIA" })), true);
  assert.equal(isGpuNode(node({ "karpenter.k8s.aws/instance-gpu-manufacturer": "amd" })), false);
});

test("a node's problem names what is missing: the kernel, the OS, or both", () => {
  const os = "feature.node.kubernetes.io/system-os_release.ID/feature.node.kubernetes.io/system-os_release.VERSION_ID labels or status.nodeInfo.osImage";
  const kernel = "feature.node.kubernetes.io/kernel-version.full label or status.nodeInfo.kernelVersion";
  const tail = ": deploy Node Feature Discovery (or label the node by hand) so gpuop can choose its driver image";
  const noOs = gpuNodeFacts({ metadata: { name: "a", labels: { [NFD_NVIDIA_PCI_LABEL]: "true", [NFD_KERNEL_LABEL]: "5.15.0-69-generic" } } });
  assert.deepEqual(noOs, { name: "a", problem: `GPU node a has no ${os}${tail}` });
  const noKernel = gpuNodeFacts({ metadata: { name: "b", labels: { [NFD_NVIDIA_PCI_LABEL]: "true", [NFD_OS_ID_LABEL]: "ubuntu", [NFD_OS_VERSION_ID_LABEL]: "22.04" } } });
  assert.deepEqual(noKernel, { name: "b", problem: `GPU node b has no ${kernel}${tail}` });
  const neither = gpuNodeFacts({ metadata: { name: "c", labels: { [NFD_NVIDIA_PCI_LABEL]: "true" } } });
  assert.deepEqual(neither, { name: "c", problem: `GPU node c has no ${kernel}, nor ${os}${tail}` });
});

test("facts: nfd only when both kernel and OS come from NFD; the architecture from nodeInfo, else empty; Ready found among other conditions", () => {
  const facts = (n: NodeLike) => {
    const f = gpuNodeFacts(n);
    assert.ok(!isNodeProblem(f));
    return f;
  };
  const osFromImage = facts({ metadata: { name: "k", labels: { [NFD_NVIDIA_PCI_LABEL]: "true", [NFD_KERNEL_LABEL]: "5.15.0-69-generic" } }, status: { nodeInfo: { osImage: "Ubuntu 22.04.4 LTS" } } });
  assert.deepEqual([osFromImage.nfd, osFromImage.osTag, osFromImage.arch], [false, "ubuntu22.04", ""]);
  const kernelFromInfo = facts({ metadata: { name: "o", labels: { [NFD_NVIDIA_PCI_LABEL]: "true", [NFD_OS_ID_LABEL]: "ubuntu", [NFD_OS_VERSION_ID_LABEL]: "22.04" } }, status: { nodeInfo: { kernelVersion: "5.15.0-69-generic", architecture: "arm64" } } });
  assert.deepEqual([kernelFromInfo.nfd, kernelFromInfo.arch], [false, "arm64"]);
  const labelsOnly = (status?: NodeLike["status"]) => facts({ metadata: { name: "l", labels: { [NFD_NVIDIA_PCI_LABEL]: "true", [NFD_KERNEL_LABEL]: "5.15.0-69-generic", [NFD_OS_ID_LABEL]: "ubuntu", [NFD_OS_VERSION_ID_LABEL]: "22.04" } }, ...(status ? { status } : {}) });
  assert.deepEqual([labelsOnly().arch, labelsOnly().ready, labelsOnly().nfd], ["", false, true]);
  assert.deepEqual([labelsOnly({}).arch, labelsOnly({}).ready], ["", false]);
  assert.equal(labelsOnly({ conditions: [{ type: "MemoryPressure", status: "False" }, { type: "Ready", status: "True" }] }).ready, true);
  assert.equal(labelsOnly({ conditions: [{ type: "NetworkUnavailable", status: "True" }, { type: "Ready", status: "False" }] }).ready, false);
});

test("in place: a Ready change behind other conditions, or a rename, is seen", () => {
  const node = gpuNode("before");
  node.status!.conditions = [{ type: "MemoryPressure", status: "False" }, { type: "Ready", status: "True" }];
  const first = gpuNodeFacts(node);
  assert.ok(!isNodeProblem(first) && first.ready);
  node.status!.conditions[1]!.status = "False";
  const second = gpuNodeFacts(node);
  assert.ok(!isNodeProblem(second) && !second.ready);
  node.metadata.name = "after";
  assert.equal(gpuNodeFacts(node).name, "after");
});

test("classifyNodes sorts problems by name too", () => {
  const bare = (name: string) => ({ metadata: { name, labels: { [NFD_NVIDIA_PCI_LABEL]: "true" } } });
  assert.deepEqual(classifyNodes([bare("z"), bare("a"), bare("m")]).problems.map((p) => p.name), ["a", "m", "z"]);
});

test("a node whose conditions hold no Ready one is not ready", () => {
  const f = gpuNodeFacts({ ...gpuNode("n"), status: { conditions: [{ type: "MemoryPressure", status: "False" }] } });
  assert.ok(!isNodeProblem(f) && f.ready === false);
});

// Surviving mutants in gpu-node.ts, equivalent: classify's `if (v === null) delete effective[k]` -> never deleting
// (a null deploy label reads as absent through `?? "false"` all the same); the UserError test before the rethrow
// (nothing else is thrown there); byName's variants (`<=`, and `a > b ? 1 : 0` -> true, false, `>=`, `<=`): node
// names are unique and V8's sort only asks whether the result is below 0; the `?? ""` fallbacks for a node without
// a name, a VERSION_ID label or an osImage (the text put in their place fails the same checks).
