
import { DEPLOY_DRIVER_LABEL, DEPLOY_OPERANDS_LABEL, isGpuNode, type NodeLike } from "../gpu-node.ts";
import { normalizePolicy, type ClusterPolicy } from "../policy.ts";
import { OPERANDS_STOP_STATES, UPGRADE_STATE_LABEL } from "../upgrade.ts";
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
import type { OperandNodeStates, OperandSplit } from "./tally.ts";

export * from "./common.ts";
export * from "./tally.ts";

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
  metadata: { uid?: string; labels?: Record<string, string>; deletionTimestamp?: string };
  spec?: { nodeName?: string };
  status?: { conditions?: { type: string; status: string }[] };
}

/** A driver pod on a node, not being deleted. */
export interface DriverPodRef {
  uid: string;
  ready: boolean;
}

/** What the node planner needs from the driver and operand pods of the namespace. */
export interface OperandPods {
  /** Ready, not terminating. */
  ready: ReadyPods;
  /** Nodes with a pod of the operand, terminating or not: a new one waits until the old one is gone. */
  present: ReadonlyMap<OperandKey, ReadonlySet<string>>;
  /** Driver pods not being deleted, by node. */
  drivers: ReadonlyMap<string, readonly DriverPodRef[]>;
}

const DRIVER_APP = "nvidia-driver-daemonset";
const appKeys = new Map<string, OperandKey | "driver">([[DRIVER_APP, "driver"], ...OPERANDS.map((o) => [o.name, o.key] as const)]);
const isReady = (pod: PodLike) => pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;

/** The driver and operand pods, by operand and node. */
export function operandPods(pods: readonly PodLike[]): OperandPods {
  const ready = new Map<OperandKey | "driver", Set<string>>();
  const present = new Map<OperandKey, Set<string>>();
  const drivers = new Map<string, DriverPodRef[]>();
  const add = <K>(m: Map<K, Set<string>>, k: K, node: string) => {
    let set = m.get(k);
    if (!set) m.set(k, (set = new Set()));
    set.add(node);
  };
  for (const pod of pods) {
    const key = appKeys.get(pod.metadata.labels?.["app"] ?? "");
    const node = pod.spec?.nodeName;
    if (!key || !node) continue;
    if (key !== "driver") add(present, key, node);
    if (pod.metadata.deletionTimestamp) continue;
    if (key === "driver") {
      let list = drivers.get(node);
      if (!list) drivers.set(node, (list = []));
      list.push({ uid: pod.metadata.uid ?? "", ready: isReady(pod) });
    }
    if (isReady(pod)) add(ready, key, node);
  }
  return { ready, present, drivers };
}

/** Ready pods by operand and node, from the driver and operand pods in the namespace. */
export function readyPods(pods: readonly PodLike[]): ReadyPods {
  return operandPods(pods).ready;
}

/**
 * The driver pod a node's operands were started against (its uid), recorded when the gate of the
 * first operand after the driver opens, in the same patch. When that pod goes, the operands go.
 */
export const OPERANDS_DRIVER_ANNOTATION = "gpuop.nvidia.com/operands-driver-pod";

/**
 * gpuop's operand controller runs NVIDIA's operator validator on the node: its deploy label (set
 * on every GPU node unless turned off) and the record that operands ran there against gpuop's
 * driver (a policy whose operands never rendered has none to wait for).
 */
export function validatorExpected(labels: Readonly<Record<string, string>>, annotations: Readonly<Record<string, string>>): boolean {
  return labels[DEPLOY_OPERANDS_LABEL] !== "false" && labels[deployLabel(operandInfo("validator"))] === "true" && annotations[OPERANDS_DRIVER_ANNOTATION] !== undefined;
}

/**
 * Driver upgrade steps (nvidia.com/gpu-driver-upgrade-state) after which the driver is taken
 * away: the operands stop there (src/core/upgrade.ts closes the gates in the step's own patch).
 */
export { OPERANDS_STOP_STATES };

/** A merge patch of a node's labels and annotations; empty maps when nothing is to change. */
export interface NodePatch {
  labels: Record<string, string | null>;
  annotations: Record<string, string | null>;
  /** Why the patch closes every gate for a driver change, for the node's Event. */
  driverChange?: string;
}

/**
 * The changes on one node for the operands:
 * - the deploy labels `nvidia.com/gpu.deploy.<operand>` are read, not written: the driver
 *   controller sets them with the other GPU labels (desiredNodeLabels: `true` where absent,
 *   kept when set to anything, `true` removed while `nvidia.com/gpu.deploy.operands=false`),
 *   and what it will set counts before its patch lands;
 * - gate labels, opened in NVIDIA's order: an operand's gate opens once its prerequisite's gate
 *   is open and its pod Ready on the node (the driver: a Ready driver pod, or a driver that is not
 *   gpuop's to run there), and no pod of the operand is still on the node (an old one leaving);
 * - a driver change closes every gate of the node (docs/adr/0006): the node enters an upgrade
 *   step that takes the driver away (OPERANDS_STOP_STATES), or the driver pod the operands were
 *   started against (OPERANDS_DRIVER_ANNOTATION) is gone (a pool move, a fallback, a deletion).
 *   They come back in order against the new driver; in `validation-required` the old driver pod
 *   does not count. A driver pod that is only not Ready (a container restart) closes nothing.
 */
export function operandNodePatch(node: NodeLike & { metadata: { annotations?: Record<string, string> } }, enabled: ReadonlySet<OperandKey>, driverEnabled: boolean, pods: OperandPods): NodePatch {
  const labels = node.metadata.labels ?? {};
  const recorded = node.metadata.annotations?.[OPERANDS_DRIVER_ANNOTATION];
  const name = node.metadata.name ?? "";
  const patch: NodePatch = { labels: {}, annotations: {} };
  const gpu = isGpuNode(node);
  const operandsOff = labels[DEPLOY_OPERANDS_LABEL] === "false";
  // A driver gpuop does not run (driver.enabled false, or the node's driver deploy label is
  // pre-installed or false) is the host's: the toolkit's driver-validation init waits for it.
  const gpuopDriver = driverEnabled && (labels[DEPLOY_DRIVER_LABEL] ?? "true") === "true";
  const state = labels[UPGRADE_STATE_LABEL] ?? "";
  const live = pods.drivers.get(name) ?? [];
  const anyOpen = OPERANDS.some((o) => labels[gateLabel(o)] === GATE_OPEN);
  const stopping = gpuopDriver && OPERANDS_STOP_STATES.has(state);
  const driverGone = gpuopDriver && recorded !== undefined && !live.some((p) => p.uid === recorded);
  const restart = anyOpen && (stopping || driverGone);
  if (restart) patch.driverChange = stopping ? `the driver upgrade takes the driver away (${state})` : "the driver pod the operands ran against is gone";
  // The driver the operands may start against: not while it is being taken away, and in
  // validation-required not the one they ran against before.
  const driver = !gpuopDriver || stopping ? undefined : live.find((p) => p.ready && !(state === "validation-required" && p.uid === recorded));
  for (const info of OPERANDS) {
    // The deploy labels are the driver controller's to write, with the other GPU labels
    // (desiredNodeLabels); until that patch lands, the value it will write counts.
    const deployValue = operandsOff ? (labels[deployLabel(info)] === "true" ? undefined : labels[deployLabel(info)]) : (labels[deployLabel(info)] ?? (gpu ? "true" : undefined));
    const gate = gateLabel(info);
    const deployable = gpu && !operandsOff && deployValue === "true" && enabled.has(info.key);
    if (!deployable || restart) {
      if (labels[gate] !== undefined) patch.labels[gate] = null;
      continue;
    }
    if (labels[gate] === GATE_OPEN) continue;
    if (pods.present.get(info.key)?.has(name)) continue;
    // A prerequisite kept off this node by its deploy label is the host's (a toolkit installed on
    // the host, as a pre-installed driver): the operand waits for the one before it instead. Not
    // while NVIDIA's driver manager pauses it for a driver upgrade.
    let after = prerequisite(info, enabled);
    while (after !== "driver" && hostProvided(labels[deployLabel(operandInfo(after))])) after = prerequisite(operandInfo(after), enabled);
    if (after === "driver") {
      if (gpuopDriver && !driver) continue;
      patch.labels[gate] = GATE_OPEN;
      if (driver && driver.uid !== recorded) patch.annotations[OPERANDS_DRIVER_ANNOTATION] = driver.uid;
    } else if (labels[gateLabel(operandInfo(after))] === GATE_OPEN && (pods.ready.get(after)?.has(name) ?? false)) {
      patch.labels[gate] = GATE_OPEN;
    }
  }
  return patch;
}

const hostProvided = (deployValue: string | undefined) => deployValue !== undefined && deployValue !== "true" && !deployValue.includes("paused-for-driver-upgrade");

/** Whether a patch changes anything. */
export const emptyPatch = (p: NodePatch) => Object.keys(p.labels).length === 0 && Object.keys(p.annotations).length === 0;

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


/**
 * `status.operands` from the split of the cluster's nodes (OperandTally), or, with `error`, from
 * the error alone. An enabled operand is ready when every GPU node meant to run it has its Ready
 * pod; nodes still waiting for a prerequisite count as not ready.
 */
export function operandStatusesFromSplit(policy: ClusterPolicy, split: readonly OperandSplit[], error?: string): OperandStatus[] {
  if (error !== undefined) {
    return [{ name: "operands", daemonSet: "", state: "error", message: `${error}. Operand DaemonSets are left as they are until the policy is fixed.` }];
  }
  const normalized = normalizePolicy(policy);
  const out: OperandStatus[] = [];
  for (const o of split) {
    if (!o.enabled) {
      out.push({ name: o.info.key, daemonSet: o.info.name, state: "disabled" });
      continue;
    }
    out.push({
      name: o.info.key,
      daemonSet: o.info.name,
      state: o.waiting === 0 && o.notReady === 0 ? "ready" : "notReady",
      nodes: o.meant,
      readyPods: o.meant - o.waiting - o.notReady,
      ...(o.waiting > 0 ? { waiting: o.waitingNames } : {}),
      ...(o.notReady > 0 ? { notReady: o.notReadyNames } : {}),
    });
  }
  for (const name of UNSUPPORTED_COMPONENTS) {
    const c = normalized.spec[name] as { enabled?: unknown } | undefined;
    if (c?.enabled === true) out.push({ name, daemonSet: "", state: "unsupported", message: `gpuop does not deploy ${name}; run it yourself or turn it off` });
  }
  return out;
}

/**
 * One node's state for each enabled operand it is meant to run (a servable GPU node: not one
 * with missing labels), from its labels and which of its operand pods are Ready. A controller
 * keeps this per node and works it out again only when the node or its pods change.
 */
export function nodeOperandStates(labels: Readonly<Record<string, string>>, enabled: ReadonlySet<OperandKey>, readyOn: (key: OperandKey) => boolean): OperandNodeStates {
  const out: OperandNodeStates = {};
  if (labels[DEPLOY_OPERANDS_LABEL] === "false") return out;
  for (const info of OPERANDS) {
    if (!enabled.has(info.key) || (labels[deployLabel(info)] ?? "true") !== "true") continue;
    out[info.key] = labels[gateLabel(info)] !== GATE_OPEN ? "waiting" : readyOn(info.key) ? "ready" : "starting";
  }
  return out;
}

/**
 * `gpuop_operand_nodes{operand,state}`: GPU nodes meant to run each enabled operand, by state:
 * ready, starting (gate open, pod not Ready) or waiting (for the operand before it, or for a
 * driver change to end). Disabled operands have no series.
 */
export function operandNodeSeriesFromSplit(split: readonly OperandSplit[]): { labels: { operand: string; state: string }; value: number }[] {
  return split
    .filter((o) => o.enabled)
    .flatMap((o) => [
      { labels: { operand: o.info.key, state: "ready" }, value: o.meant - o.waiting - o.notReady },
      { labels: { operand: o.info.key, state: "starting" }, value: o.notReady },
      { labels: { operand: o.info.key, state: "waiting" }, value: o.waiting },
    ]);
}

/**
 * Events for operands whose state changed between two statuses of the same policy: ready
 * (Normal) or no longer ready (Warning, naming a few nodes). The first status after a start has
 * nothing to compare with and gives none; so does a steady state.
 */
export function operandTransitions(before: readonly OperandStatus[] | undefined, after: readonly OperandStatus[]): { type: "Normal" | "Warning"; reason: string; message: string }[] {
  if (!before) return [];
  const was = new Map(before.map((o) => [o.name, o.state]));
  const out: { type: "Normal" | "Warning"; reason: string; message: string }[] = [];
  for (const o of after) {
    const prev = was.get(o.name);
    if (prev === undefined || prev === o.state) continue;
    if (o.state === "ready") out.push({ type: "Normal", reason: "OperandReady", message: `${o.name} (${o.daemonSet}) is Ready on all ${o.nodes ?? 0} of its nodes` });
    else if (o.state === "notReady" && prev === "ready") {
      const nodes = [...(o.notReady ?? []), ...(o.waiting ?? [])];
      out.push({ type: "Warning", reason: "OperandNotReady", message: `${o.name} (${o.daemonSet}): ${o.readyPods ?? 0}/${o.nodes ?? 0} nodes ready; not ready on ${nodes.slice(0, 5).join(", ")}${nodes.length > 5 ? ", ..." : ""}` });
    }
  }
  return out;
}

/** The operand keys a policy turns on, or a UserError's message. */
export function enabledOperands(policy: ClusterPolicy): Set<OperandKey> {
  const p = normalizePolicy(policy);
  return new Set(OPERANDS.filter((o) => operandEnabled(p, o)).map((o) => o.key));
}

