import { createHash } from "node:crypto";
import { canonicalJson } from "../diff.ts";
import { UserError } from "../errors.ts";
import { parseImageRef } from "../image.ts";
import type { ClusterPolicy, EnvVar } from "../policy.ts";

/**
 * What gpuop knows about NVIDIA's operands besides the driver: their names, deploy keys,
 * service accounts, ClusterPolicy keys and default images (NVIDIA's chart, v26.7.0), and the
 * one each needs ready on a node before it may go there.
 */

export type OperandKey = "toolkit" | "devicePlugin" | "gfd" | "dcgmExporter" | "validator";

export interface OperandInfo {
  /** The ClusterPolicy spec key. */
  key: OperandKey;
  /** DaemonSet name, also the pods' `app` label. */
  name: string;
  /** `nvidia.com/gpu.deploy.<deployKey>`. */
  deployKey: string;
  serviceAccount: string;
  defaultImage: { repository: string; image: string; version: string };
  /** NVIDIA's defaults: every operand here is on unless the policy turns it off. */
  defaultEnabled: boolean;
  /** The operand that must be ready on a node first; "driver" for the toolkit. */
  after: OperandKey | "driver";
  /** NVIDIA adds `app.kubernetes.io/part-of` to these pods. */
  partOf?: string;
}

const NVCR = "nvcr.io/nvidia";
/** The validator image NVIDIA's chart of the same release uses (appVersion). */
export const VALIDATOR_DEFAULT_VERSION = "v26.7.0";

export const OPERANDS: readonly OperandInfo[] = [
  {
    key: "toolkit",
    name: "nvidia-container-toolkit-daemonset",
    deployKey: "container-toolkit",
    serviceAccount: "nvidia-container-toolkit",
    defaultImage: { repository: `${NVCR}/k8s`, image: "container-toolkit", version: "v1.20.0" },
    defaultEnabled: true,
    after: "driver",
  },
  {
    key: "validator",
    name: "nvidia-operator-validator",
    deployKey: "operator-validator",
    serviceAccount: "nvidia-operator-validator",
    defaultImage: { repository: `${NVCR}/cloud-native`, image: "gpu-operator-validator", version: VALIDATOR_DEFAULT_VERSION },
    defaultEnabled: true,
    after: "toolkit",
    partOf: "gpu-operator",
  },
  {
    key: "devicePlugin",
    name: "nvidia-device-plugin-daemonset",
    deployKey: "device-plugin",
    serviceAccount: "nvidia-device-plugin",
    defaultImage: { repository: NVCR, image: "k8s-device-plugin", version: "v0.20.0" },
    defaultEnabled: true,
    after: "toolkit",
  },
  {
    key: "gfd",
    name: "gpu-feature-discovery",
    deployKey: "gpu-feature-discovery",
    serviceAccount: "nvidia-gpu-feature-discovery",
    defaultImage: { repository: NVCR, image: "k8s-device-plugin", version: "v0.20.0" },
    defaultEnabled: true,
    after: "toolkit",
    partOf: "nvidia-gpu",
  },
  {
    key: "dcgmExporter",
    name: "nvidia-dcgm-exporter",
    deployKey: "dcgm-exporter",
    serviceAccount: "nvidia-dcgm-exporter",
    defaultImage: { repository: `${NVCR}/k8s`, image: "dcgm-exporter", version: "4.6.0-4.8.3-distroless" },
    defaultEnabled: true,
    after: "toolkit",
  },
];

export const operandInfo = (key: OperandKey): OperandInfo => OPERANDS.find((o) => o.key === key)!;

/** Selects every operand object gpuop owns. Not `app.kubernetes.io/managed-by=gpuop`: the driver controller prunes DaemonSets with that label it did not render. */
export const OPERAND_LABEL = "gpuop.nvidia.com/operand";
/** Per node and operand: gpuop sets it to `open` once the operand's prerequisite is ready there (docs/adr/0006). */
export const gateLabel = (info: OperandInfo) => `gpuop.nvidia.com/gate.${info.deployKey}`;
export const GATE_OPEN = "open";
export const deployLabel = (info: OperandInfo) => `nvidia.com/gpu.deploy.${info.deployKey}`;
export const OPERAND_HASH_ANNOTATION = "gpuop.nvidia.com/render-hash";

export const VALIDATIONS_DIR = "/run/nvidia/validations";
export const DRIVER_ROOT = "/run/nvidia/driver";

/** NVIDIA's operands gpuop leaves out; named in the status when a policy turns them on. */
export const UNSUPPORTED_COMPONENTS = ["migManager", "dcgm", "nodeStatusExporter", "sandboxWorkloads", "vgpuManager", "vgpuDeviceManager", "kataManager", "ccManager", "vfioManager", "sandboxDevicePlugin"] as const;

/** The fields NVIDIA defines for every operand (the ones gpuop acts on). */
export interface OperandSpec {
  enabled?: boolean;
  repository?: string;
  image?: string;
  version?: string;
  imagePullPolicy?: string;
  imagePullSecrets?: string[];
  env?: EnvVar[];
  args?: string[];
  resources?: { limits?: Record<string, string | number>; requests?: Record<string, string | number> };
  [field: string]: unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A Kubernetes object name that is also a valid volume name (DNS-1123 label). */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** `spec.<key>.config`: a ConfigMap by name (and, for the device plugin, the default entry), type-checked. */
export function configRef(policy: ClusterPolicy, key: OperandKey): { name: string; default?: string } | undefined {
  const raw = (policy.spec?.[key] as Record<string, unknown> | undefined)?.["config"];
  if (raw === undefined || raw === null) return undefined;
  const at = `spec.${key}.config`;
  if (!isRecord(raw)) throw new UserError(`${at} must be an object with the name of a ConfigMap`);
  const { name, default: dflt } = raw;
  if (name !== undefined && typeof name !== "string") throw new UserError(`${at}.name must be a string, not ${JSON.stringify(name)}`);
  if (dflt !== undefined && typeof dflt !== "string") throw new UserError(`${at}.default must be a string, not ${JSON.stringify(dflt)}`);
  if (!name) return undefined;
  // Also the pod's volume name, as in NVIDIA's DaemonSets: a DNS-1123 label.
  if (!DNS_LABEL.test(name)) throw new UserError(`${at}.name ${JSON.stringify(name)} must be a ConfigMap name of at most 63 lowercase letters, digits and '-'`);
  return { name, ...(dflt ? { default: dflt } : {}) };
}

/** The policy's spec for an operand, type-checked; a wrong type is a UserError naming the field. */
export function operandSpec(policy: ClusterPolicy, key: OperandKey): OperandSpec {
  const raw = policy.spec?.[key];
  if (raw === undefined) return {};
  const at = `spec.${key}`;
  if (!isRecord(raw)) throw new UserError(`${at} must be an object`);
  if (raw["enabled"] !== undefined && typeof raw["enabled"] !== "boolean") throw new UserError(`${at}.enabled must be a boolean, not ${JSON.stringify(raw["enabled"])}`);
  for (const f of ["repository", "image", "version", "imagePullPolicy"]) {
    if (raw[f] !== undefined && typeof raw[f] !== "string") throw new UserError(`${at}.${f} must be a string, not ${JSON.stringify(raw[f])}`);
  }
  for (const f of ["imagePullSecrets", "args"]) {
    const v = raw[f];
    if (v !== undefined && (!Array.isArray(v) || v.some((s) => typeof s !== "string"))) throw new UserError(`${at}.${f} must be a list of strings, not ${JSON.stringify(v)}`);
  }
  const env = raw["env"];
  if (env !== undefined && (!Array.isArray(env) || !env.every((e) => isRecord(e) && typeof e["name"] === "string" && e["name"] !== "" && (e["value"] === undefined || typeof e["value"] === "string")))) {
    throw new UserError(`${at}.env must be a list of {name, value} with string values, not ${JSON.stringify(env)}`);
  }
  return raw as OperandSpec;
}

/** NVIDIA's rule: the validator is always on; the others are on unless `enabled: false`. */
export function operandEnabled(policy: ClusterPolicy, info: OperandInfo): boolean {
  if (info.key === "validator") return true;
  const enabled = operandSpec(policy, info.key).enabled;
  return enabled ?? info.defaultEnabled;
}

/**
 * `<repository>/<image>:<version>` (`@` for a digest); `image` alone is taken as a full
 * reference; only some of the three is an error that says what to add; none gives the default.
 */
export function operandImage(spec: OperandSpec, info: OperandInfo): string {
  const { repository, image, version } = spec;
  let ref: string;
  if (!repository && !image && !version) {
    const d = info.defaultImage;
    ref = `${d.repository}/${d.image}:${d.version}`;
  } else if (image && !repository && !version) {
    ref = image;
  } else if (!repository || !image || !version) {
    const missing = [!repository && "repository", !image && "image", !version && "version"].filter(Boolean).join(" and ");
    throw new UserError(`spec.${info.key} sets only some of repository, image and version: add ${missing} (or set image to a full reference, or none of them for ${info.defaultImage.repository}/${info.defaultImage.image}:${info.defaultImage.version})`);
  } else {
    ref = `${repository.replace(/\/+$/, "")}/${image}${version.startsWith("sha256:") ? "@" : ":"}${version}`;
  }
  try {
    parseImageRef(ref);
  } catch (err) {
    throw new UserError(`spec.${info.key}: image ${ref} is not a valid reference: ${(err as Error).message}`);
  }
  return ref;
}

/** The prerequisite an enabled operand waits for, skipping disabled ones: with the toolkit off, the device plugin waits for the driver. */
export function prerequisite(info: OperandInfo, enabled: ReadonlySet<OperandKey>): OperandKey | "driver" {
  let after = info.after;
  while (after !== "driver" && !enabled.has(after)) after = operandInfo(after).after;
  return after;
}

// --- Kubernetes shapes, only the fields gpuop sets. ---

export type Env = { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } };
export type Mount = { name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string; subPath?: string };
export type OperandContainer = {
  name: string;
  image: string;
  imagePullPolicy: string;
  command?: string[];
  args?: string[];
  env?: Env[];
  securityContext?: { privileged: boolean; runAsUser?: number };
  resources?: { limits?: Record<string, string>; requests?: Record<string, string> };
  ports?: { name: string; containerPort: number; protocol: "TCP" }[];
  volumeMounts?: Mount[];
  lifecycle?: { preStop: { exec: { command: string[] } } };
};
export type HostPathVolume =
  | { name: string; hostPath: { path: string; type?: string } }
  | { name: string; emptyDir: { medium?: string } }
  | { name: string; configMap: { name: string; items?: { key: string; path: string }[] } };
export type OperandPodSpec = {
  serviceAccountName: string;
  priorityClassName: string;
  hostPID?: boolean;
  shareProcessNamespace?: boolean;
  runtimeClassName?: string;
  nodeSelector: Record<string, string>;
  tolerations: Record<string, unknown>[];
  imagePullSecrets?: { name: string }[];
  initContainers?: OperandContainer[];
  containers: OperandContainer[];
  volumes: HostPathVolume[];
};
export type OwnerRef = { apiVersion: string; kind: string; name: string; uid: string };
export type OperandDaemonSet = {
  apiVersion: "apps/v1";
  kind: "DaemonSet";
  metadata: { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string>; ownerReferences?: (OwnerRef & { controller: true; blockOwnerDeletion: true })[] };
  spec: {
    selector: { matchLabels: Record<string, string> };
    updateStrategy: { type: "RollingUpdate"; rollingUpdate: { maxUnavailable: number | string } } | { type: "OnDelete" };
    template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: OperandPodSpec };
  };
};
export type OperandService = {
  apiVersion: "v1";
  kind: "Service";
  metadata: { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string>; ownerReferences?: (OwnerRef & { controller: true; blockOwnerDeletion: true })[] };
  spec: { selector: Record<string, string>; type: string; internalTrafficPolicy?: "Cluster" | "Local"; ports: { name: string; port: number; targetPort: number; protocol: "TCP" }[] };
};

/** Env vars by name, first-set order kept; a later value replaces an earlier one (the policy's win). */
export class EnvBuilder {
  #vars = new Map<string, Env>();
  set(name: string, value: string): this {
    this.#vars.set(name, value === "" ? { name } : { name, value });
    return this;
  }
  fieldRef(name: string, fieldPath: string): this {
    this.#vars.set(name, { name, valueFrom: { fieldRef: { fieldPath } } });
    return this;
  }
  setAll(vars: readonly EnvVar[] | undefined): this {
    for (const v of vars ?? []) this.set(v.name, v.value ?? "");
    return this;
  }
  list(): Env[] {
    return [...this.#vars.values()];
  }
}

export function hostPath(name: string, path: string, type?: string): HostPathVolume {
  return { name, hostPath: type ? { path, type } : { path } };
}

export function resources(r: OperandSpec["resources"]): OperandContainer["resources"] | undefined {
  if (!r) return undefined;
  const out: NonNullable<OperandContainer["resources"]> = {};
  for (const key of ["limits", "requests"] as const) {
    const list = r[key];
    if (list && Object.keys(list).length > 0) out[key] = Object.fromEntries(Object.entries(list).map(([k, v]) => [k, String(v)]));
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Everything each operand renderer needs besides its own spec. */
export interface OperandContext {
  policy: ClusterPolicy;
  namespace: string;
  /** The validator's image, for the `*-validation` init containers every operand runs. */
  validatorImage: string;
  validatorPullPolicy: string;
  /** The RuntimeClass the toolkit registers (`operator.runtimeClass`, default nvidia). */
  runtimeClass: string;
  /** Which operands are on (the device plugin's env and the validator's inits depend on it). */
  enabled: ReadonlySet<OperandKey>;
}

/** One of NVIDIA's `<component>-validation` init containers: waits until `<component>-ready` is in /run/nvidia/validations. */
export function validationInit(ctx: OperandContext, component: "driver" | "toolkit" | "cuda" | "plugin", extraEnv: Env[] = []): OperandContainer {
  const env = new EnvBuilder().set("WITH_WAIT", component === "driver" || component === "toolkit" ? "true" : "false").set("COMPONENT", component);
  for (const e of extraEnv) env.set(e.name, e.value ?? "");
  // validator.<component>.env, set or replaced in every operand's init of that component, as NVIDIA does.
  env.setAll(validatorComponentEnv(ctx.policy, component));
  const res = resources(operandSpec(ctx.policy, "validator").resources);
  const mounts: Mount[] = [{ name: "run-nvidia-validations", mountPath: VALIDATIONS_DIR, mountPropagation: "Bidirectional" }];
  if (component === "driver") {
    mounts.push(
      { name: "host-root", mountPath: "/host", readOnly: true, mountPropagation: "HostToContainer" },
      { name: "driver-install-dir", mountPath: "/run/nvidia/driver", mountPropagation: "HostToContainer" },
      { name: "host-dev-char", mountPath: "/host-dev-char" },
    );
  }
  return {
    name: `${component}-validation`,
    image: ctx.validatorImage,
    imagePullPolicy: ctx.validatorPullPolicy,
    command: ["sh", "-c"],
    args: ["nvidia-validator"],
    env: env.list(),
    securityContext: { privileged: true, runAsUser: 0 },
    ...(res ? { resources: res } : {}),
    volumeMounts: mounts,
  };
}

/** `spec.validator.<component>.env` (driver, toolkit, cuda, plugin), type-checked. */
export function validatorComponentEnv(policy: ClusterPolicy, component: "driver" | "toolkit" | "cuda" | "plugin"): EnvVar[] {
  const part = (policy.spec?.["validator"] as Record<string, unknown> | undefined)?.[component];
  if (part === undefined || part === null) return [];
  const at = `spec.validator.${component}`;
  if (!isRecord(part)) throw new UserError(`${at} must be an object`);
  const env = part["env"];
  if (env === undefined) return [];
  if (!Array.isArray(env) || !env.every((e) => isRecord(e) && typeof e["name"] === "string" && e["name"] !== "" && (e["value"] === undefined || typeof e["value"] === "string"))) {
    throw new UserError(`${at}.env must be a list of {name, value} with string values, not ${JSON.stringify(env)}`);
  }
  return env as EnvVar[];
}

/** What a single operand renderer returns: the pod spec parts that differ between operands. */
export interface OperandPod {
  hostPID?: boolean;
  /** The config-manager sidecar signals the main process (NVIDIA sets it when hostPID is not). */
  shareProcessNamespace?: boolean;
  withRuntimeClass: boolean;
  initContainers: OperandContainer[];
  containers: OperandContainer[];
  volumes: HostPathVolume[];
}

/** `spec.daemonsets`: what NVIDIA lets a policy set on every operand DaemonSet. */
export interface CommonDaemonSetSpec {
  priorityClassName: string;
  /** Replaces the default toleration, as NVIDIA's does. */
  tolerations: Record<string, unknown>[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  updateStrategy: OperandDaemonSet["spec"]["updateStrategy"];
}

export function commonDaemonSetSpec(policy: ClusterPolicy): CommonDaemonSetSpec {
  const raw = policy.spec?.["daemonsets"];
  const at = "spec.daemonsets";
  if (raw !== undefined && !isRecord(raw)) throw new UserError(`${at} must be an object`);
  const d = raw ?? {};
  const strings = (field: string): Record<string, string> => {
    const v = d[field];
    if (v === undefined) return {};
    if (!isRecord(v) || Object.values(v).some((x) => typeof x !== "string")) throw new UserError(`${at}.${field} must be a map of strings, not ${JSON.stringify(v)}`);
    return v as Record<string, string>;
  };
  const tolerations = d["tolerations"];
  if (tolerations !== undefined && (!Array.isArray(tolerations) || !tolerations.every(isRecord))) throw new UserError(`${at}.tolerations must be a list of tolerations, not ${JSON.stringify(tolerations)}`);
  const priority = d["priorityClassName"];
  if (priority !== undefined && typeof priority !== "string") throw new UserError(`${at}.priorityClassName must be a string`);
  let updateStrategy: CommonDaemonSetSpec["updateStrategy"];
  if (d["updateStrategy"] === "OnDelete") updateStrategy = { type: "OnDelete" };
  else if (d["updateStrategy"] === undefined || d["updateStrategy"] === "RollingUpdate") {
    const ru = d["rollingUpdate"];
    const mu = isRecord(ru) ? ru["maxUnavailable"] : undefined;
    // NVIDIA's chart writes "1": an int-or-string that is a string must be a percentage, so digits become a number.
    const maxUnavailable = mu === undefined ? 1 : typeof mu === "number" ? mu : typeof mu === "string" && /^\d+$/.test(mu) ? Number(mu) : typeof mu === "string" && /^\d+%$/.test(mu) ? mu : undefined;
    if (maxUnavailable === undefined) throw new UserError(`${at}.rollingUpdate.maxUnavailable must be a count or a percentage like "25%", not ${JSON.stringify(mu)}`);
    updateStrategy = { type: "RollingUpdate", rollingUpdate: { maxUnavailable } };
  } else throw new UserError(`${at}.updateStrategy must be RollingUpdate or OnDelete, not ${JSON.stringify(d["updateStrategy"])}`);
  return {
    priorityClassName: typeof priority === "string" && priority !== "" ? priority : "system-node-critical",
    tolerations: (tolerations as Record<string, unknown>[] | undefined) ?? [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
    labels: strings("labels"),
    annotations: strings("annotations"),
    updateStrategy,
  };
}

/** Wraps an operand's pod in NVIDIA's DaemonSet: name = `app` label, the deploy and gate labels as the only selector. */
export function operandDaemonSet(info: OperandInfo, spec: OperandSpec, pod: OperandPod, ctx: OperandContext, owner: OwnerRef | undefined): OperandDaemonSet {
  const common = commonDaemonSetSpec(ctx.policy);
  const own: Record<string, string> = { app: info.name, [OPERAND_LABEL]: info.key, ...(info.partOf ? { "app.kubernetes.io/part-of": info.partOf } : {}) };
  // The policy's labels go on the DaemonSet and its pods, never over the ones gpuop selects by.
  const labels: Record<string, string> = { ...common.labels, ...own };
  const secrets = [...new Set(spec.imagePullSecrets ?? [])].filter((s) => s !== "");
  const podSpec: OperandPodSpec = {
    serviceAccountName: info.serviceAccount,
    priorityClassName: common.priorityClassName,
    ...(pod.hostPID ? { hostPID: true } : {}),
    ...(pod.shareProcessNamespace && !pod.hostPID ? { shareProcessNamespace: true } : {}),
    ...(pod.withRuntimeClass ? { runtimeClassName: ctx.runtimeClass } : {}),
    nodeSelector: { [deployLabel(info)]: "true", [gateLabel(info)]: GATE_OPEN },
    tolerations: structuredClone(common.tolerations),
    ...(secrets.length > 0 ? { imagePullSecrets: secrets.map((name) => ({ name })) } : {}),
    ...(pod.initContainers.length > 0 ? { initContainers: pod.initContainers } : {}),
    containers: pod.containers,
    volumes: pod.volumes,
  };
  const ds: OperandDaemonSet = {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: {
      name: info.name,
      namespace: ctx.namespace,
      labels: { ...labels },
      annotations: { ...common.annotations },
      ...(owner ? { ownerReferences: [{ ...owner, controller: true, blockOwnerDeletion: true }] } : {}),
    },
    spec: {
      selector: { matchLabels: { app: info.name } },
      updateStrategy: common.updateStrategy,
      template: { metadata: { labels: { ...labels }, ...(Object.keys(common.annotations).length > 0 ? { annotations: { ...common.annotations } } : {}) }, spec: podSpec },
    },
  };
  ds.metadata.annotations[OPERAND_HASH_ANNOTATION] = objectHash(ds);
  return ds;
}

export function objectHash(obj: { metadata: { labels: Record<string, string>; annotations: Record<string, string>; ownerReferences?: unknown[] }; spec: unknown }): string {
  const { [OPERAND_HASH_ANNOTATION]: _ignored, ...annotations } = obj.metadata.annotations;
  const subject = { labels: obj.metadata.labels, annotations, ownerReferences: obj.metadata.ownerReferences ?? [], spec: obj.spec };
  return createHash("sha256").update(canonicalJson(subject)).digest("hex").slice(0, 16);
}
