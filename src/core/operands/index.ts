
import { classifyNodes, DEPLOY_DRIVER_LABEL, DEPLOY_OPERANDS_LABEL, isGpuNode, type NodeLike } from "../gpu-node.ts";
import { normalizePolicy, type ClusterPolicy } from "../policy.ts";
import {
  deployLabel,
  gateLabel,
  GATE_OPEN,
  OPERANDS,
  operandDaemonSet,
  operandEnabled,
  operandImage,
  operandInfo,
  operandSpec,
  prerequisite,
  UNSUPPORTED_COMPONENTS,
  type OperandContext,
  type OperandDaemonSet,
  type OperandInfo,
  type OperandKey,
  type OperandPod,
  type OperandService,
  type OperandSpec,
  type OwnerRef,
} from "./common.ts";
import { dcgmExporterPod, dcgmExporterService } from "./dcgm-exporter.ts";
import { devicePluginPod } from "./device-plugin.ts";
import { gfdPod } from "./gfd.ts";
import { clusterRuntime, toolkitPod } from "./toolkit.ts";
import { validatorPod } from "./validator.ts";

export * from "./common.ts";

export interface OperandRenderInput {
  policy: ClusterPolicy;
  namespace: string;
  owner?: OwnerRef;
  /** Nodes' `status.nodeInfo.containerRuntimeVersion`, for the toolkit's RUNTIME. */
  runtimeVersions?: readonly string[];
}

export interface OperandRenderResult {
  enabled: OperandKey[];
  disabled: OperandKey[];
  daemonSets: OperandDaemonSet[];
  services: OperandService[];
  /** NVIDIA components the policy turns on that gpuop does not deploy. */
  unsupported: string[];
}

/**
 * NVIDIA's operands a policy asks for, rendered from the policy alone (no node list: every
 * DaemonSet selects its nodes by the deploy and gate labels). Throws a UserError for a policy
 * that cannot be rendered; the controller then leaves the operands as they are.
 */
export function renderOperands(input: OperandRenderInput): OperandRenderResult {
  const policy = normalizePolicy(input.policy);
  const enabledSet = new Set(OPERANDS.filter((o) => operandEnabled(policy, o)).map((o) => o.key));
  const validator = operandSpec(policy, "validator");
  const operatorSpec = policy.spec["operator"] as { runtimeClass?: unknown } | undefined;
  const ctx: OperandContext = {
    policy,
    namespace: input.namespace,
    validatorImage: operandImage(validator, operandInfo("validator")),
    validatorPullPolicy: validator.imagePullPolicy ?? "IfNotPresent",
    runtimeClass: typeof operatorSpec?.runtimeClass === "string" && operatorSpec.runtimeClass !== "" ? operatorSpec.runtimeClass : "nvidia",
    enabled: enabledSet,
    driverEnabled: policy.spec.driver.enabled !== false,
  };
  const result: OperandRenderResult = { enabled: [], disabled: [], daemonSets: [], services: [], unsupported: [] };
  for (const info of OPERANDS) {
    if (!enabledSet.has(info.key)) {
      result.disabled.push(info.key);
      continue;
    }
    result.enabled.push(info.key);
    const spec = operandSpec(policy, info.key);
    const image = operandImage(spec, info);
    result.daemonSets.push(operandDaemonSet(info, spec, operandPod(info, spec, image, ctx, input.runtimeVersions ?? []), ctx, input.owner));
    if (info.key === "dcgmExporter") result.services.push(dcgmExporterService(info, spec, input.namespace, input.owner));
  }
  for (const name of UNSUPPORTED_COMPONENTS) {
    const c = policy.spec[name] as { enabled?: unknown } | undefined;
    if (c?.enabled === true) result.unsupported.push(name);
  }
  return result;
}

function operandPod(info: OperandInfo, spec: OperandSpec, image: string, ctx: OperandContext, runtimes: readonly string[]): OperandPod {
  switch (info.key) {
    case "toolkit":
      return toolkitPod(spec, image, ctx, clusterRuntime(runtimes));
    case "devicePlugin":
      return devicePluginPod(spec, image, ctx);
    case "gfd":
      return gfdPod(spec, image, ctx);
    case "dcgmExporter":
      return dcgmExporterPod(spec, image, ctx);
    case "validator":
      return validatorPod(spec, image, ctx);
  }
}

/** Whether an operand's pod on a node is Ready, by operand (or "driver"), by node name. */
export type ReadyPods = ReadonlyMap<OperandKey | "driver", ReadonlySet<string>>;

export interface PodLike {
  metadata: { labels?: Record<string, string>; deletionTimestamp?: string };
  spec?: { nodeName?: string };
  status?: { conditions?: { type: string; status: string }[] };
}

/** Ready pods by operand and node, from the driver and operand pods in the namespace. */
export function readyPods(pods: readonly PodLike[]): ReadyPods {
  const byApp = new Map<string, OperandKey | "driver">([["nvidia-driver-daemonset", "driver"], ...OPERANDS.map((o) => [o.name, o.key] as const)]);
  const out = new Map<OperandKey | "driver", Set<string>>();
  for (const pod of pods) {
    const key = byApp.get(pod.metadata.labels?.["app"] ?? "");
    const node = pod.spec?.nodeName;
    if (!key || !node || pod.metadata.deletionTimestamp) continue;
    if (!pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) continue;
    let set = out.get(key);
    if (!set) out.set(key, (set = new Set()));
    set.add(node);
  }
  return out;
}

/**
 * The label changes on one node for the operands (a merge patch of `metadata.labels`; empty
 * when nothing is to change):
 * - deploy labels `nvidia.com/gpu.deploy.<operand>=true` on GPU nodes where absent, kept when
 *   set to anything (`false` keeps the operand off); removed when `true` while
 *   `nvidia.com/gpu.deploy.operands=false`, as for the driver;
 * - gate labels, opened once the operand's prerequisite has a Ready pod on the node (or the
 *   driver is not gpuop's to run there), and kept open afterwards: the pods' own validation
 *   inits order restarts (docs/adr/0006). Closed where the operand is off or cannot deploy.
 */
export function operandNodeLabels(node: NodeLike, enabled: ReadonlySet<OperandKey>, driverEnabled: boolean, ready: ReadyPods): Record<string, string | null> {
  const labels = node.metadata.labels ?? {};
  const name = node.metadata.name ?? "";
  const patch: Record<string, string | null> = {};
  const gpu = isGpuNode(node);
  const operandsOff = labels[DEPLOY_OPERANDS_LABEL] === "false";
  for (const info of OPERANDS) {
    const deploy = deployLabel(info);
    let deployValue = labels[deploy];
    if (gpu && operandsOff && deployValue === "true") {
      patch[deploy] = null;
      deployValue = undefined;
    } else if (gpu && !operandsOff && deployValue === undefined) {
      patch[deploy] = "true";
      deployValue = "true";
    }
    const gate = gateLabel(info);
    const deployable = gpu && !operandsOff && deployValue === "true" && enabled.has(info.key);
    if (!deployable) {
      if (labels[gate] !== undefined) patch[gate] = null;
      continue;
    }
    if (labels[gate] === GATE_OPEN) continue;
    if (prerequisiteReady(prerequisite(info, enabled), name, labels, driverEnabled, ready)) patch[gate] = GATE_OPEN;
  }
  return patch;
}

function prerequisiteReady(after: OperandKey | "driver", node: string, labels: Record<string, string>, driverEnabled: boolean, ready: ReadyPods): boolean {
  // A driver gpuop does not run (driver.enabled false, or the node's driver deploy label is
  // pre-installed or false) is the host's: the toolkit's driver-validation init waits for it.
  if (after === "driver" && (!driverEnabled || (labels[DEPLOY_DRIVER_LABEL] !== undefined && labels[DEPLOY_DRIVER_LABEL] !== "true"))) return true;
  return ready.get(after)?.has(node) ?? false;
}

/** One operand's share of `status.operands`. */
export interface OperandStatus {
  name: string;
  daemonSet: string;
  /** ready | notReady | disabled | unsupported | error */
  state: string;
  /** Nodes the operand should run on (deploy label true, prerequisites met or not). */
  nodes?: number;
  readyPods?: number;
  /** Nodes waiting for the prerequisite. */
  waiting?: string[];
  /** Nodes whose gate is open and whose pod is not Ready yet. */
  notReady?: string[];
  message?: string;
}

const MAX_LISTED = 20;
const cap = (names: string[]) => names.slice(0, MAX_LISTED);

/**
 * `status.operands` for what was observed. An enabled operand is ready when every GPU node
 * meant to run it has its Ready pod; nodes still waiting for a prerequisite count as not ready.
 */
export function operandStatuses(input: { policy: ClusterPolicy; nodes: readonly NodeLike[]; ready: ReadyPods; error?: string }): OperandStatus[] {
  if (input.error !== undefined) {
    return [{ name: "operands", daemonSet: "", state: "error", message: `${input.error}. Operand DaemonSets are left as they are until the policy is fixed.` }];
  }
  const policy = normalizePolicy(input.policy);
  const { gpuNodes } = classifyNodes(input.nodes);
  const labelsOf = new Map(input.nodes.map((n) => [n.metadata.name ?? "", n.metadata.labels ?? {}]));
  const out: OperandStatus[] = [];
  for (const info of OPERANDS) {
    if (!operandEnabled(policy, info)) {
      out.push({ name: info.key, daemonSet: info.name, state: "disabled" });
      continue;
    }
    const readyOn = input.ready.get(info.key) ?? new Set<string>();
    const meant = gpuNodes.filter((n) => {
      const labels = labelsOf.get(n.name) ?? {};
      return labels[DEPLOY_OPERANDS_LABEL] !== "false" && (labels[deployLabel(info)] ?? "true") === "true";
    });
    const waiting = meant.filter((n) => labelsOf.get(n.name)?.[gateLabel(info)] !== GATE_OPEN).map((n) => n.name);
    const notReady = meant.filter((n) => labelsOf.get(n.name)?.[gateLabel(info)] === GATE_OPEN && !readyOn.has(n.name)).map((n) => n.name);
    const readyCount = meant.length - waiting.length - notReady.length;
    out.push({
      name: info.key,
      daemonSet: info.name,
      state: waiting.length === 0 && notReady.length === 0 ? "ready" : "notReady",
      nodes: meant.length,
      readyPods: readyCount,
      ...(waiting.length > 0 ? { waiting: cap(waiting) } : {}),
      ...(notReady.length > 0 ? { notReady: cap(notReady) } : {}),
    });
  }
  for (const name of UNSUPPORTED_COMPONENTS) {
    const c = policy.spec[name] as { enabled?: unknown } | undefined;
    if (c?.enabled === true) out.push({ name, daemonSet: "", state: "unsupported", message: `gpuop does not deploy ${name}; run it yourself or turn it off` });
  }
  return out;
}

/** The operand keys a policy turns on, or a UserError's message. */
export function enabledOperands(policy: ClusterPolicy): Set<OperandKey> {
  const p = normalizePolicy(policy);
  return new Set(OPERANDS.filter((o) => operandEnabled(p, o)).map((o) => o.key));
}

