import { deepFreeze } from "./diff.ts";
import { UserError } from "./errors.ts";
import { driverBranchOf, isFullDriverVersion } from "./tag.ts";
import { parseSelector } from "./upgrade.ts";

/**
 * The ClusterPolicy (nvidia.com/v1), as NVIDIA's GPU Operator defines it, with the parts gpuop
 * acts on typed. The CRD is deployments/gpu-operator/crds/nvidia.com_clusterpolicies.yaml; the
 * defaults here must stay equal to the schema's.
 */

export const CLUSTER_POLICY_GROUP = "nvidia.com";
export const CLUSTER_POLICY_VERSION = "v1";
export const CLUSTER_POLICY_API_VERSION = `${CLUSTER_POLICY_GROUP}/${CLUSTER_POLICY_VERSION}`;
export const CLUSTER_POLICY_KIND = "ClusterPolicy";
export const CLUSTER_POLICY_PLURAL = "clusterpolicies";
/** API path of the collection (cluster-scoped). */
export const CLUSTER_POLICY_PATH = `/apis/${CLUSTER_POLICY_API_VERSION}/${CLUSTER_POLICY_PLURAL}`;

export const IMAGE_PULL_POLICIES = ["Always", "IfNotPresent", "Never"] as const;
export type ImagePullPolicy = (typeof IMAGE_PULL_POLICIES)[number];
export const KERNEL_MODULE_TYPES = ["auto", "open", "proprietary"] as const;
export type KernelModuleType = (typeof KERNEL_MODULE_TYPES)[number];

export interface EnvVar {
  name: string;
  value?: string;
}

export interface ResourceRequirements {
  limits?: Record<string, string | number>;
  requests?: Record<string, string | number>;
}

export interface ContainerProbeSpec {
  initialDelaySeconds?: number;
  timeoutSeconds?: number;
  periodSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

/** The k8s-driver-manager init container. */
export interface DriverManagerSpec {
  repository?: string;
  image?: string;
  version?: string;
  imagePullPolicy?: ImagePullPolicy;
  imagePullSecrets?: string[];
  env?: EnvVar[];
}

export interface GpuDirectRdmaSpec {
  enabled?: boolean;
  useHostMofed?: boolean;
}

export interface DriverUpgradePolicySpec {
  autoUpgrade?: boolean;
  /** 0 means no limit. */
  maxParallelUpgrades?: number;
  /** A count or a percentage such as "25%". */
  maxUnavailable?: number | string;
  podDeletion?: { force?: boolean; timeoutSeconds?: number; deleteEmptyDir?: boolean };
  waitForCompletion?: { podSelector?: string; timeoutSeconds?: number };
  drain?: { enable?: boolean; force?: boolean; podSelector?: string; timeoutSeconds?: number; deleteEmptyDir?: boolean };
}

export interface DriverSpec {
  enabled?: boolean;
  usePrecompiled?: boolean;
  useNvidiaDriverCRD?: boolean;
  useOpenKernelModules?: boolean;
  kernelModuleType?: KernelModuleType;
  repository?: string;
  image?: string;
  /** Full version or digest (conventional), driver branch (precompiled). */
  version?: string;
  imagePullPolicy?: ImagePullPolicy;
  imagePullSecrets?: string[];
  env?: EnvVar[];
  args?: string[];
  /** Driver pods in the host's network namespace (NVIDIA's CRD added it). */
  hostNetwork?: boolean;
  resources?: ResourceRequirements;
  manager?: DriverManagerSpec;
  rdma?: GpuDirectRdmaSpec;
  startupProbe?: ContainerProbeSpec;
  livenessProbe?: ContainerProbeSpec;
  readinessProbe?: ContainerProbeSpec;
  kernelModuleConfig?: { name?: string };
  licensingConfig?: { configMapName?: string; secretName?: string; nlsEnabled?: boolean };
  repoConfig?: { configMapName?: string };
  certConfig?: { name?: string };
  virtualTopology?: { config?: string };
  secretEnv?: string;
  upgradePolicy?: DriverUpgradePolicySpec;
}

/** A component gpuop does not deploy but must know about: only `enabled` matters, the rest is kept. */
export interface ComponentToggle {
  enabled?: boolean;
  [field: string]: unknown;
}

export interface ClusterPolicySpec {
  driver?: DriverSpec;
  gds?: ComponentToggle;
  gdrcopy?: ComponentToggle;
  vgpuManager?: ComponentToggle;
  vgpuDeviceManager?: ComponentToggle;
  sandboxWorkloads?: ComponentToggle;
  /** NVIDIA's other operands (toolkit, devicePlugin, dcgm…): accepted and kept, not acted on. */
  [field: string]: unknown;
}

export const POLICY_STATES = ["ready", "notReady", "ignored"] as const;
export type PolicyState = (typeof POLICY_STATES)[number];

/** metav1.Condition. */
export interface Condition {
  type: "Ready" | "Error" | (string & {});
  status: "True" | "False" | "Unknown";
  observedGeneration?: number;
  /** RFC 3339. */
  lastTransitionTime: string;
  /** CamelCase. */
  reason: string;
  message: string;
}

/** Summary of one driver DaemonSet. */
export interface PoolStatus {
  /** The DaemonSet's name. */
  name: string;
  /** Precompiled pools only. */
  kernel?: string;
  osTag: string;
  image: string;
  precompiled: boolean;
  nodes?: number;
  desired?: number;
  readyPods?: number;
}

export interface ClusterPolicyStatus {
  state?: PolicyState;
  namespace?: string;
  observedGeneration?: number;
  conditions?: Condition[];
  pools?: PoolStatus[];
  /** Driver upgrades: GPU nodes per nvidia.com/gpu-driver-upgrade-state, and the nodes waiting, failed or outdated (lists capped). */
  upgrades?: {
    nodesByState: Record<string, number>;
    pending: string[];
    failed: { node: string; reason: string }[];
    outdated: string[];
  };
  /** Written by the operand controller only (merge patch of this field); see docs/adr/0006. */
  operands?: { name: string; state: string; [field: string]: unknown }[];
}

export interface ClusterPolicyMetadata {
  name: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  /** RFC 3339. */
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

export interface ClusterPolicy {
  apiVersion?: string;
  kind?: string;
  metadata: ClusterPolicyMetadata;
  spec?: ClusterPolicySpec;
  status?: ClusterPolicyStatus;
}

/** The driver spec after defaulting: what the apiserver stores for a schema-checked object. */
export type NormalizedDriverSpec = DriverSpec &
  Required<Pick<DriverSpec, "enabled" | "usePrecompiled" | "image" | "kernelModuleType">>;

export interface NormalizedClusterPolicy extends ClusterPolicy {
  spec: ClusterPolicySpec & { driver: NormalizedDriverSpec };
}

/** The schema's defaults for spec.driver. */
export const driverSpecDefaults = {
  enabled: true,
  usePrecompiled: false,
  image: "driver",
  kernelModuleType: "auto",
} as const satisfies Partial<DriverSpec>;

export const rdmaDefaults = { enabled: false, useHostMofed: false } as const satisfies GpuDirectRdmaSpec;

export const upgradePolicyDefaults = {
  // NVIDIA's chart renders true; gpuop's CRD defaults to it too (docs/adr/0005-driver-upgrades.md).
  autoUpgrade: true,
  maxParallelUpgrades: 1,
  maxUnavailable: "25%",
} as const satisfies DriverUpgradePolicySpec;

const podDeletionDefaults = { force: false, timeoutSeconds: 300, deleteEmptyDir: false };
const waitForCompletionDefaults = { timeoutSeconds: 0 };
const drainDefaults = { enable: false, force: false, timeoutSeconds: 300, deleteEmptyDir: false };

/** The policies normalizePolicy returned: frozen, so normalizing one again can return it. */
const NORMALIZED = new WeakSet<object>();

/**
 * Applies the CRD's defaults to a ClusterPolicy that may not have passed through the apiserver
 * (a file, a test, an older stored object), and checks the types of the fields gpuop reads.
 * Returns a new, frozen object; idempotent, and a policy it returned is returned as it is (so a
 * controller normalizes once per policy change and passes the result on). Throws a UserError
 * naming a field of the wrong type.
 */
export function normalizePolicy(obj: unknown): NormalizedClusterPolicy {
  if (isRecord(obj) && NORMALIZED.has(obj)) return obj as unknown as NormalizedClusterPolicy;
  if (!isRecord(obj)) throw new UserError("ClusterPolicy must be an object");
  const metadata = obj["metadata"];
  if (!isRecord(metadata) || typeof metadata["name"] !== "string" || metadata["name"] === "") {
    throw new UserError("ClusterPolicy has no metadata.name: give the policy a name, e.g. cluster-policy");
  }
  const spec = obj["spec"] ?? {};
  if (!isRecord(spec)) throw new UserError("ClusterPolicy spec must be an object");
  const driver = spec["driver"] ?? {};
  if (!isRecord(driver)) throw new UserError("spec.driver must be an object");
  checkDriverTypes(driver);
  for (const name of ["gds", "gdrcopy", "vgpuManager", "vgpuDeviceManager", "sandboxWorkloads"]) {
    const component = spec[name];
    if (component === undefined) continue;
    if (!isRecord(component)) throw new UserError(`spec.${name} must be an object`);
    expectType(component, "enabled", "boolean", `spec.${name}`);
  }

  const d = structuredClone(driver) as DriverSpec;
  const normalized: NormalizedDriverSpec = { ...driverSpecDefaults, ...d };
  if (d.rdma) normalized.rdma = { ...rdmaDefaults, ...d.rdma };
  if (d.upgradePolicy) {
    const u = d.upgradePolicy;
    const up: DriverUpgradePolicySpec = { ...upgradePolicyDefaults, ...u };
    if (u.podDeletion) up.podDeletion = { ...podDeletionDefaults, ...u.podDeletion };
    if (u.waitForCompletion) up.waitForCompletion = { ...waitForCompletionDefaults, ...u.waitForCompletion };
    if (u.drain) up.drain = { ...drainDefaults, ...u.drain };
    normalized.upgradePolicy = up;
  }
  const out = structuredClone(obj) as unknown as ClusterPolicy;
  const result: NormalizedClusterPolicy = deepFreeze({ ...out, spec: { ...(structuredClone(spec) as ClusterPolicySpec), driver: normalized } });
  NORMALIZED.add(result);
  return result;
}

function checkDriverTypes(driver: Record<string, unknown>): void {
  const at = "spec.driver";
  for (const f of ["enabled", "usePrecompiled", "useNvidiaDriverCRD", "useOpenKernelModules", "hostNetwork"]) {
    expectType(driver, f, "boolean", at);
  }
  for (const f of ["repository", "image", "version", "secretEnv"]) expectType(driver, f, "string", at);
  expectOneOf(driver, "kernelModuleType", KERNEL_MODULE_TYPES, at);
  expectOneOf(driver, "imagePullPolicy", IMAGE_PULL_POLICIES, at);
  expectStringList(driver, "imagePullSecrets", at);
  expectStringList(driver, "args", at);
  expectEnvList(driver, "env", at);
  for (const f of ["resources", "manager", "rdma", "startupProbe", "livenessProbe", "readinessProbe", "kernelModuleConfig", "upgradePolicy"]) {
    if (driver[f] !== undefined && !isRecord(driver[f])) throw new UserError(`${at}.${f} must be an object`);
  }
  const manager = driver["manager"];
  if (isRecord(manager)) {
    for (const f of ["repository", "image", "version"]) expectType(manager, f, "string", `${at}.manager`);
    expectOneOf(manager, "imagePullPolicy", IMAGE_PULL_POLICIES, `${at}.manager`);
    expectStringList(manager, "imagePullSecrets", `${at}.manager`);
    expectEnvList(manager, "env", `${at}.manager`);
  }
  const rdma = driver["rdma"];
  if (isRecord(rdma)) for (const f of ["enabled", "useHostMofed"]) expectType(rdma, f, "boolean", `${at}.rdma`);
  for (const p of ["startupProbe", "livenessProbe", "readinessProbe"]) {
    const probe = driver[p];
    if (!isRecord(probe)) continue;
    for (const f of ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"]) {
      const v = probe[f];
      if (v !== undefined && !(Number.isInteger(v) && (v as number) >= 0)) {
        throw new UserError(`${at}.${p}.${f} must be a whole number of at least 0, not ${JSON.stringify(v)}`);
      }
    }
  }
  const upgrade = driver["upgradePolicy"];
  if (isRecord(upgrade)) checkUpgradePolicy(upgrade, `${at}.upgradePolicy`);
  const kmc = driver["kernelModuleConfig"];
  if (isRecord(kmc)) expectType(kmc, "name", "string", `${at}.kernelModuleConfig`);
}

/** The upgrade policy's fields gpuop acts on; a selector that does not parse would otherwise stall every upgrade. */
function checkUpgradePolicy(u: Record<string, unknown>, at: string): void {
  expectType(u, "autoUpgrade", "boolean", at);
  const count = (o: Record<string, unknown>, f: string, where: string) => {
    const v = o[f];
    if (v !== undefined && !(Number.isInteger(v) && (v as number) >= 0)) throw new UserError(`${where}.${f} must be a whole number of at least 0, not ${JSON.stringify(v)}`);
  };
  count(u, "maxParallelUpgrades", at);
  for (const part of ["podDeletion", "waitForCompletion", "drain"]) {
    const o = u[part];
    if (o === undefined) continue;
    if (!isRecord(o)) throw new UserError(`${at}.${part} must be an object`);
    count(o, "timeoutSeconds", `${at}.${part}`);
    for (const f of ["force", "deleteEmptyDir", "enable"]) expectType(o, f, "boolean", `${at}.${part}`);
    expectType(o, "podSelector", "string", `${at}.${part}`);
    if (typeof o["podSelector"] === "string") {
      try {
        parseSelector(o["podSelector"]);
      } catch {
        throw new UserError(`${at}.${part}.podSelector ${JSON.stringify(o["podSelector"])} is not a label selector: write it as kubectl -l takes it, e.g. "app=training,tier!=web"`);
      }
    }
  }
}

function expectType(o: Record<string, unknown>, field: string, type: "string" | "boolean", at: string): void {
  const v = o[field];
  if (v !== undefined && typeof v !== type) {
    throw new UserError(`${at}.${field} must be a ${type}, not ${JSON.stringify(v)}`);
  }
}

function expectOneOf(o: Record<string, unknown>, field: string, allowed: readonly string[], at: string): void {
  const v = o[field];
  if (v !== undefined && !allowed.includes(v as string)) {
    throw new UserError(`${at}.${field} is ${JSON.stringify(v)}: use one of ${allowed.join(", ")}`);
  }
}

function expectStringList(o: Record<string, unknown>, field: string, at: string): void {
  const v = o[field];
  if (v === undefined) return;
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) {
    throw new UserError(`${at}.${field} must be a list of strings, not ${JSON.stringify(v)}`);
  }
}

function expectEnvList(o: Record<string, unknown>, field: string, at: string): void {
  const v = o[field];
  if (v === undefined) return;
  const ok =
    Array.isArray(v) &&
    v.every((e) => isRecord(e) && typeof e["name"] === "string" && e["name"] !== "" && (e["value"] === undefined || typeof e["value"] === "string"));
  if (!ok) throw new UserError(`${at}.${field} must be a list of {name, value} with string values, not ${JSON.stringify(v)}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The policy with the operator's default driver version (`--default-driver-version`) filled in
 * where spec.driver.version is absent or empty, as NVIDIA's operator falls back to its default
 * driver image (NVIDIA's sample ClusterPolicy names none), and, as that default image does, the
 * repository nvcr.io/nvidia where the policy names none. With usePrecompiled a full default
 * version gives its branch (550.54.15 -> 550), since precompiled images are tagged by branch.
 * Anything else is returned as it is, for validatePolicy to judge.
 */
export function withDefaultDriverVersion<T extends ClusterPolicy>(policy: T, defaultVersion: string | undefined): T {
  if (!defaultVersion) return policy;
  const spec = policy.spec;
  if (spec !== undefined && !isRecord(spec)) return policy;
  const driver = spec?.driver;
  if (driver !== undefined && !isRecord(driver)) return policy;
  if (driver?.version !== undefined && driver.version !== "") return policy;
  const version = driver?.usePrecompiled === true && isFullDriverVersion(defaultVersion) ? driverBranchOf(defaultVersion) : defaultVersion;
  const defaulted: DriverSpec = { ...(driver as DriverSpec | undefined), version };
  // NVIDIA's operator then pulls its default image, nvcr.io/nvidia/driver: without a repository,
  // a plain image name would otherwise be looked up on Docker Hub.
  const image = defaulted.image ?? driverSpecDefaults.image;
  if (!defaulted.repository && !image.includes("/")) defaulted.repository = DEFAULT_DRIVER_REPOSITORY;
  return { ...policy, spec: { ...spec, driver: defaulted } };
}

/** Where NVIDIA publishes its driver images; used with the operator's default driver version. */
export const DEFAULT_DRIVER_REPOSITORY = "nvcr.io/nvidia";

/**
 * What a policy's normalized form and everything rendered from it depend on: its identity, its
 * labels and annotations, and its spec; not its status nor its resourceVersion. The operator
 * writes the status itself, and each write brings the object back changed: keyed on the object,
 * the driver DaemonSets were validated and rendered again (about 50 ms at 3,000 nodes) after
 * every status write of a rollout.
 */
export function policySpecKey(p: { metadata: { name: string; uid?: string; generation?: number; labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: unknown }): string {
  const m = p.metadata;
  return JSON.stringify([m.uid ?? "", m.name, m.generation ?? 0, m.labels ?? {}, m.annotations ?? {}, p.spec ?? null]);
}

/**
 * With several ClusterPolicies, the oldest is active (then the lowest name, so the choice is
 * total); the others get state `ignored`. Returns undefined for an empty list.
 */
export function selectActivePolicy<T extends { metadata: { name: string; creationTimestamp?: string } }>(
  policies: readonly T[],
): T | undefined {
  let best: T | undefined;
  for (const p of policies) {
    if (best === undefined || comparePolicyAge(p, best) < 0) best = p;
  }
  return best;
}

function comparePolicyAge(
  a: { metadata: { name: string; creationTimestamp?: string } },
  b: { metadata: { name: string; creationTimestamp?: string } },
): number {
  // A missing timestamp (not yet stored) sorts last: a stored policy has precedence.
  const ta = timestamp(a.metadata.creationTimestamp);
  const tb = timestamp(b.metadata.creationTimestamp);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

function timestamp(t: string | undefined): number {
  const ms = t ? Date.parse(t) : NaN;
  return Number.isNaN(ms) ? Infinity : ms;
}
