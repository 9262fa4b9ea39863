import { UserError } from "./errors.ts";
import { parseKernel } from "./kernel.ts";
import { deployLabel, OPERANDS } from "./operands/common.ts";
import { formatOsTag, NFD_OS_ID_LABEL, NFD_OS_VERSION_ID_LABEL, osReleaseFromOsImage, osTagFromLabels } from "./os.ts";

/** Node Feature Discovery: a PCI device of vendor 10de (NVIDIA) is present. */
export const NFD_NVIDIA_PCI_LABEL = "feature.node.kubernetes.io/pci-10de.present";
/** Node Feature Discovery: the running kernel, as `uname -r` prints it. */
export const NFD_KERNEL_LABEL = "feature.node.kubernetes.io/kernel-version.full";
export const ARCH_LABEL = "kubernetes.io/arch";
/** Set by gpuop (and NVIDIA's operator) on every GPU node. */
export const GPU_PRESENT_LABEL = "nvidia.com/gpu.present";
/** Selects nodes for the driver DaemonSets when "true". */
export const DEPLOY_DRIVER_LABEL = "nvidia.com/gpu.deploy.driver";
/** "false" turns off every operand, the driver included, on a node. */
export const DEPLOY_OPERANDS_LABEL = "nvidia.com/gpu.deploy.operands";

/**
 * Labels that mark GPU nodes on managed clusters, so gpuop finds them without Node Feature
 * Discovery: GKE's accelerator type (set by GKE), the accelerator label cluster-autoscaler reads
 * on AWS (set on EKS node groups by eksctl and most templates), Karpenter's and EKS Auto Mode's
 * GPU manufacturer, and AKS's accelerator. Without a value here any value but "" and "false"
 * counts; with one, that value (case-insensitive).
 */
export const CLOUD_GPU_LABELS: readonly { label: string; value?: string }[] = [
  { label: "cloud.google.com/gke-accelerator" },
  { label: "k8s.amazonaws.com/accelerator" },
  { label: "karpenter.k8s.aws/instance-gpu-manufacturer", value: "nvidia" },
  { label: "eks.amazonaws.com/instance-gpu-manufacturer", value: "nvidia" },
  { label: "kubernetes.azure.com/accelerator", value: "nvidia" },
];

/** How gpuop recognises GPU nodes beyond the built-in labels: a selector the user configures. */
export interface GpuNodeOptions {
  /** Every label must match (`--gpu-node-selector`); empty or absent: not used. */
  gpuNodeSelector?: Readonly<Record<string, string>>;
}

/**
 * Values of the deploy label with a meaning to NVIDIA's tooling: `false` (stay away),
 * `pre-installed` (the host has a driver), `paused-for-driver-upgrade` (set during upgrades).
 */
export const DEPLOY_DRIVER_VALUES = ["true", "false", "pre-installed", "paused-for-driver-upgrade"] as const;
export type DeployDriverValue = (typeof DEPLOY_DRIVER_VALUES)[number] | (string & {});

/** The parts of a Node gpuop reads; src/kube/types.ts's Node fits it. */
export interface NodeLike {
  metadata: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  status?: {
    nodeInfo?: { kernelVersion?: string; osImage?: string; architecture?: string };
    conditions?: { type: string; status: string }[];
  };
}

export interface GpuNodeFacts {
  name: string;
  /** Kernel release from NFD's label, else the kubelet's nodeInfo.kernelVersion. */
  kernel: string;
  /** `ubuntu22.04`, `rhel9`. */
  osTag: string;
  /** NFD's VERSION_ID label as is (`9.4` where the OS tag says `rhel9`); from nodeInfo.osImage, the tag's version. */
  osVersionId: string;
  /**
   * Kernel and OS came from NFD's labels, so the DaemonSets may select on them; otherwise from
   * status.nodeInfo, and the node is selected by its pool label alone.
   */
  nfd: boolean;
  /** `amd64`, `arm64`; "" when neither the label nor the node status says. */
  arch: string;
  /** The deploy label's value once gpuop has labelled the node; "false" while operands are disabled and no value is set. */
  deploy: DeployDriverValue;
  /** `nvidia.com/gpu.deploy.operands=false`. */
  operandsDisabled: boolean;
  /** The Ready condition is True. Readiness never changes what is rendered (no churn while nodes flap). */
  ready: boolean;
  /** A driver DaemonSet will run a pod on the node: deploy is "true" and operands are not disabled. */
  deployable: boolean;
}

export interface GpuNodeProblem {
  name: string;
  /** Says which label is missing or wrong and how to fix it. */
  problem: string;
}

export type GpuNodeClassification = GpuNodeFacts | GpuNodeProblem;

export function isNodeProblem(c: GpuNodeClassification): c is GpuNodeProblem {
  return "problem" in c;
}

/**
 * A GPU node: NFD found an NVIDIA PCI device, a managed cloud's accelerator label says so, the
 * node is labelled `nvidia.com/gpu.present=true`, or it matches the user's GPU node selector.
 */
export function isGpuNode(node: NodeLike, opts: GpuNodeOptions = {}): boolean {
  const labels = node.metadata.labels ?? {};
  if (labels[NFD_NVIDIA_PCI_LABEL] === "true" || labels[GPU_PRESENT_LABEL] === "true") return true;
  for (const { label, value } of CLOUD_GPU_LABELS) {
    const v = labels[label];
    if (v !== undefined && v !== "" && v !== "false" && (value === undefined || v.toLowerCase() === value)) return true;
  }
  const selector = Object.entries(opts.gpuNodeSelector ?? {});
  return selector.length > 0 && selector.every(([k, v]) => labels[k] === v);
}

/**
 * What gpuop needs to know about a GPU node to place a driver on it, or, when it cannot tell the
 * kernel or OS, a problem saying so. NFD's labels come first; without them the kubelet's
 * status.nodeInfo (kernelVersion, osImage) is used, so gpuop works without NFD. Call it for GPU
 * nodes only.
 */
export function gpuNodeFacts(node: NodeLike, opts: GpuNodeOptions = {}): GpuNodeClassification {
  // Every reconcile pass classifies every node, several times. The answer is kept with
  // the node object (a cached node is replaced on update) and reused while what it is
  // computed from reads the same, so a node changed in place is classified again. The
  // inputs are compared field by field: no string is built (JSON of them cost as much as classifying).
  const known = factsByNode.get(node);
  if (known && sameSelector(known.opts.gpuNodeSelector, opts.gpuNodeSelector) && sameInputs(known.inputs, node)) return known.facts;
  const facts = classify(node, opts);
  factsByNode.set(node, { opts: { ...(opts.gpuNodeSelector ? { gpuNodeSelector: { ...opts.gpuNodeSelector } } : {}) }, inputs: inputsOf(node), facts });
  return facts;
}

/** What classify reads of a node, copied (a node may be changed in place). */
interface ClassifyInputs {
  name: string | undefined;
  labels: Record<string, string>;
  kernelVersion: string | undefined;
  osImage: string | undefined;
  architecture: string | undefined;
  ready: boolean;
}

const readyOf = (node: NodeLike) => node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

function inputsOf(node: NodeLike): ClassifyInputs {
  const info = node.status?.nodeInfo;
  return { name: node.metadata.name, labels: { ...node.metadata.labels }, kernelVersion: info?.kernelVersion, osImage: info?.osImage, architecture: info?.architecture, ready: readyOf(node) };
}

function sameSelector(a: Readonly<Record<string, string>> = {}, b: Readonly<Record<string, string>> = {}): boolean {
  if (a === b) return true;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

function sameInputs(a: ClassifyInputs, node: NodeLike): boolean {
  const info = node.status?.nodeInfo;
  if (a.name !== node.metadata.name || a.kernelVersion !== info?.kernelVersion || a.osImage !== info?.osImage || a.architecture !== info?.architecture || a.ready !== readyOf(node)) return false;
  const labels = node.metadata.labels ?? {};
  let n = 0;
  for (const k in labels) {
    if (a.labels[k] !== labels[k]) return false;
    n++;
  }
  return n === Object.keys(a.labels).length;
}

const factsByNode = new WeakMap<NodeLike, { opts: GpuNodeOptions; inputs: ClassifyInputs; facts: GpuNodeClassification }>();

/**
 * gpuNodeFacts without its memo: for callers that keep the answer themselves, next to an
 * object they know is never changed in place (an informer's cached node, replaced on update).
 */
export function classifyGpuNode(node: NodeLike, opts: GpuNodeOptions = {}): GpuNodeClassification {
  return classify(node, opts);
}

function classify(node: NodeLike, opts: GpuNodeOptions): GpuNodeClassification {
  const name = node.metadata.name ?? "";
  const labels = node.metadata.labels ?? {};
  const info = node.status?.nodeInfo ?? {};
  const nfdKernel = labels[NFD_KERNEL_LABEL];
  const nfdOs = Boolean(labels[NFD_OS_ID_LABEL] && labels[NFD_OS_VERSION_ID_LABEL]);
  const kernel = nfdKernel || info.kernelVersion || "";
  if (!kernel || (!nfdOs && !info.osImage)) {
    const missing = [...(kernel ? [] : [`${NFD_KERNEL_LABEL} label or status.nodeInfo.kernelVersion`]), ...(nfdOs || info.osImage ? [] : [`${NFD_OS_ID_LABEL}/${NFD_OS_VERSION_ID_LABEL} labels or status.nodeInfo.osImage`])];
    return {
      name,
      problem: `GPU node ${name} has no ${missing.join(", nor ")}: deploy Node Feature Discovery (or label the node by hand) so gpuop can choose its driver image`,
    };
  }
  let osTag: string;
  let osVersionId: string;
  try {
    parseKernel(kernel);
    if (nfdOs) {
      osTag = osTagFromLabels(labels);
      osVersionId = labels[NFD_OS_VERSION_ID_LABEL] ?? "";
    } else {
      const os = osReleaseFromOsImage(info.osImage ?? "");
      osTag = formatOsTag(os);
      osVersionId = os.versionId;
    }
  } catch (err) {
    if (err instanceof UserError) return { name, problem: `GPU node ${name}: ${err.message}` };
    throw err;
  }
  const operandsDisabled = labels[DEPLOY_OPERANDS_LABEL] === "false";
  const effective = { ...labels };
  for (const [k, v] of Object.entries(desiredNodeLabels(node, opts))) {
    if (v === null) delete effective[k];
    else effective[k] = v;
  }
  const deploy = effective[DEPLOY_DRIVER_LABEL] ?? "false";
  return {
    name,
    kernel,
    osTag,
    osVersionId,
    nfd: Boolean(nfdKernel) && nfdOs,
    arch: labels[ARCH_LABEL] ?? node.status?.nodeInfo?.architecture ?? "",
    deploy,
    operandsDisabled,
    ready: node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
    deployable: deploy === "true" && !operandsDisabled,
  };
}

/**
 * The label changes gpuop makes on a node, as a JSON merge patch of `metadata.labels`
 * (null removes a label). Empty when nothing is to change, so a steady cluster sees no writes.
 *
 * - GPU nodes get `nvidia.com/gpu.present=true`, `nvidia.com/gpu.deploy.driver=true` and the
 *   deploy label of every operand gpuop knows (`nvidia.com/gpu.deploy.<operand>=true`), as
 *   NVIDIA's operator sets them all together: one patch with the driver pool label, rather than
 *   a second one from the operand controller (which reads them, docs/adr/0006).
 * - An existing deploy value is kept whatever it is: `false`, `pre-installed` and
 *   `paused-for-driver-upgrade` carry meaning, and an unknown value is someone else's to fix.
 * - With `nvidia.com/gpu.deploy.operands=false` no deploy label is added, and a `true`
 *   (the value gpuop sets) is removed; the other values are kept, unlike NVIDIA's operator
 *   which drops them all, so turning operands back on does not put a driver on a node marked
 *   `pre-installed` or `false`.
 */
export function desiredNodeLabels(node: NodeLike, opts: GpuNodeOptions = {}): Record<string, string | null> {
  if (!isGpuNode(node, opts)) return {};
  const labels = node.metadata.labels ?? {};
  const patch: Record<string, string | null> = {};
  if (labels[GPU_PRESENT_LABEL] !== "true") patch[GPU_PRESENT_LABEL] = "true";
  const off = labels[DEPLOY_OPERANDS_LABEL] === "false";
  for (const key of DEPLOY_LABELS) {
    const deploy = labels[key];
    if (off) {
      if (deploy === "true") patch[key] = null;
    } else if (deploy === undefined) {
      patch[key] = "true";
    }
  }
  return patch;
}

/** The driver's deploy label and the operands', in NVIDIA's names. */
const DEPLOY_LABELS = [DEPLOY_DRIVER_LABEL, ...OPERANDS.map(deployLabel)];

/**
 * GPU nodes split into those gpuop can serve and those with a problem; each sorted by name.
 * Already classified nodes (GpuNodeFacts) pass through, so callers holding facts can reuse them.
 */
export function classifyNodes(nodes: readonly (NodeLike | GpuNodeFacts)[], opts: GpuNodeOptions = {}): { gpuNodes: GpuNodeFacts[]; problems: GpuNodeProblem[] } {
  const classified: GpuNodeClassification[] = [];
  for (const node of nodes) {
    if (!("metadata" in node)) classified.push(node);
    else if (isGpuNode(node, opts)) classified.push(gpuNodeFacts(node, opts));
  }
  return splitClassifications(classified);
}

/** Classified GPU nodes split into those gpuop can serve and those with a problem; each sorted by name. */
export function splitClassifications(classified: Iterable<GpuNodeClassification>): { gpuNodes: GpuNodeFacts[]; problems: GpuNodeProblem[] } {
  const gpuNodes: GpuNodeFacts[] = [];
  const problems: GpuNodeProblem[] = [];
  for (const c of classified) {
    if (isNodeProblem(c)) problems.push(c);
    else gpuNodes.push(c);
  }
  const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return { gpuNodes: gpuNodes.sort(byName), problems: problems.sort(byName) };
}
