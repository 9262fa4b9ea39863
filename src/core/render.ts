import { deepFreeze } from "./diff.ts";
import { UserError } from "./errors.ts";
import { classifyNodes, DEPLOY_DRIVER_LABEL, NFD_KERNEL_LABEL, type GpuNodeFacts, type GpuNodeOptions, type NodeLike } from "./gpu-node.ts";
import { parseImageRef } from "./image.ts";
import { conventionalDaemonSetName, precompiledDaemonSetName } from "./names.ts";
import { MAJOR_VERSION_ONLY_OS_IDS, NFD_OS_ID_LABEL, NFD_OS_VERSION_ID_LABEL, isOsTag, parseOsTag } from "./os.ts";
import {
  CLUSTER_POLICY_API_VERSION,
  CLUSTER_POLICY_KIND,
  normalizePolicy,
  type ClusterPolicy,
  type ContainerProbeSpec,
  type EnvVar,
  type NormalizedDriverSpec,
  type ResourceRequirements,
} from "./policy.ts";
import { POOL_NODE_LABEL } from "./rollout.ts";
import { DRIVER_RESTART_STATE, driverTemplateHash, TEMPLATE_HASH_ANNOTATION, UPGRADE_STATE_LABEL } from "./upgrade.ts";
import { formatConventionalTag, formatPrecompiledTag, isDriverBranch } from "./tag.ts";

/**
 * The driver DaemonSets a ClusterPolicy asks for, computed from the policy and the nodes alone.
 *
 * One DaemonSet per pool: per OS tag in conventional mode (so mixed-OS clusters work), per
 * kernel and OS tag in precompiled mode. Output is sorted and contains nothing time- or
 * order-dependent, so rendering the same inputs twice gives equal objects and the controller
 * can apply without churn.
 */

/** Every driver pod (and DaemonSet) carries it; the seed's `kubectl get pods -l` relies on it. */
export const DRIVER_APP_LABEL = "app";
export const DRIVER_APP = "nvidia-driver-daemonset";
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "gpuop";
export const PRECOMPILED_LABEL = "nvidia.com/precompiled";
/** The pool a DaemonSet, its pods and (set by the controller) its nodes belong to. */
export const POOL_LABEL = POOL_NODE_LABEL;

export const DRIVER_CONTAINER = "nvidia-driver-ctr";
export const DRIVER_MANAGER_CONTAINER = "k8s-driver-manager";
export const DRIVER_SERVICE_ACCOUNT = "nvidia-driver";
export const DRIVER_READY_FILE = "/run/nvidia/validations/.driver-ctr-ready";
/** The driver-manager's API token, mounted into the k8s-driver-manager init container only. */
export const MANAGER_TOKEN_VOLUME = "driver-manager-token";
export const SERVICE_ACCOUNT_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount";

/** NVIDIA's startup probe timing: the conventional container compiles modules first. */
export const STARTUP_PROBE_DEFAULTS = {
  initialDelaySeconds: 60,
  periodSeconds: 10,
  timeoutSeconds: 60,
  failureThreshold: 120,
} as const satisfies ContainerProbeSpec;

// --- The Kubernetes shapes rendered (apps/v1 DaemonSet), only the fields gpuop sets. ---

export type EnvVarSource = { fieldRef: { fieldPath: string } };
export type ContainerEnv = { name: string; value?: string; valueFrom?: EnvVarSource };
export type VolumeMount = { name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string; subPath?: string };
export type Probe = {
  exec: { command: string[] };
  initialDelaySeconds?: number;
  timeoutSeconds?: number;
  periodSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
};
export type Container = {
  name: string;
  image: string;
  imagePullPolicy: string;
  command?: string[];
  args?: string[];
  env?: ContainerEnv[];
  envFrom?: { secretRef: { name: string } }[];
  securityContext: { privileged: boolean; seLinuxOptions?: { level: string } };
  resources?: { limits?: Record<string, string>; requests?: Record<string, string> };
  volumeMounts: VolumeMount[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  lifecycle?: { preStop: { exec: { command: string[] } } };
};
export type ProjectedSource =
  | { serviceAccountToken: { path: string; expirationSeconds: number } }
  | { configMap: { name: string; items: { key: string; path: string }[] } }
  | { downwardAPI: { items: { path: string; fieldRef: { apiVersion: string; fieldPath: string } }[] } };
export type Volume =
  | { name: string; hostPath: { path: string; type?: string } }
  | { name: string; configMap: { name: string } }
  | { name: string; projected: { sources: ProjectedSource[] } };
export type NodeSelectorRequirement = { key: string; operator: "In" | "NotIn"; values: string[] };
export type PodSpec = {
  serviceAccountName: string;
  automountServiceAccountToken: boolean;
  priorityClassName: string;
  hostPID: boolean;
  hostNetwork?: boolean;
  dnsPolicy?: string;
  nodeSelector: Record<string, string>;
  affinity?: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: { matchExpressions: NodeSelectorRequirement[] }[] } } };
  tolerations: { key: string; operator: "Exists"; effect: string }[];
  imagePullSecrets?: { name: string }[];
  initContainers?: Container[];
  containers: Container[];
  volumes: Volume[];
};
export type OwnerReference = { apiVersion: string; kind: string; name: string; uid: string; controller: true; blockOwnerDeletion: true };
export type DriverDaemonSet = {
  apiVersion: "apps/v1";
  kind: "DaemonSet";
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    ownerReferences?: OwnerReference[];
  };
  spec: {
    selector: { matchLabels: Record<string, string> };
    updateStrategy: { type: "OnDelete" };
    template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: PodSpec };
  };
};

/** One driver DaemonSet's share of the cluster. */
export interface Pool {
  /** The DaemonSet's name, also the value of the pool label on its pods and nodes. */
  name: string;
  /** Precompiled pools only. */
  kernel?: string;
  osTag: string;
  image: string;
  precompiled: boolean;
  /** The deployable GPU nodes it serves, sorted. */
  nodes: string[];
}

export interface RenderInput {
  policy: ClusterPolicy;
  /** All nodes; non-GPU nodes are ignored. */
  nodes: readonly (NodeLike | GpuNodeFacts)[];
  /** Namespace of the DaemonSets (the operator's). */
  namespace: string;
  /** Owner of the DaemonSets; by default the policy itself when it has a uid. */
  ownerRef?: { apiVersion: string; kind: string; name: string; uid: string };
  /**
   * Select nodes by the pool label as well (default true): the controller then moves a node
   * between pools by relabelling it (see rollout.ts), so old and new DaemonSets can coexist
   * during a mode switch without two driver pods on one node.
   */
  selectByPoolLabel?: boolean;
  /** Labels every driver pod's node must carry besides gpuop's own: the admin-only GPU node label (docs/security.md). */
  requiredNodeLabels?: Record<string, string>;
  /** How GPU nodes are recognised beyond the built-in labels (the operator's --gpu-node-selector). */
  gpuNodeOptions?: GpuNodeOptions;
}

export interface RenderResult {
  daemonSets: DriverDaemonSet[];
  pools: Pool[];
  /** GPU nodes gpuop cannot serve (missing or unusable NFD labels), by name. */
  problems: { node: string; message: string }[];
}

/**
 * Renders the driver DaemonSets. Throws a UserError when the policy cannot be rendered
 * (version of the wrong kind for the mode, bad image reference); run validatePolicy first so
 * such a policy leaves the existing DaemonSets alone.
 */
export function renderDriverDaemonSets(input: RenderInput): RenderResult {
  const policy = normalizePolicy(input.policy);
  const driver = policy.spec.driver;
  const { gpuNodes, problems } = classifyNodes(input.nodes, input.gpuNodeOptions);
  const result: RenderResult = {
    daemonSets: [],
    pools: [],
    problems: problems.map((p) => ({ node: p.name, message: p.problem })),
  };
  if (!driver.enabled) return result;

  const owner = input.ownerRef ?? (policy.metadata.uid
    ? { apiVersion: policy.apiVersion ?? CLUSTER_POLICY_API_VERSION, kind: policy.kind ?? CLUSTER_POLICY_KIND, name: policy.metadata.name, uid: policy.metadata.uid }
    : undefined);
  const groups = groupIntoPools(gpuNodes.filter((n) => n.deployable), driver);
  let memo = RENDERED.get(driver);
  if (!memo) RENDERED.set(driver, (memo = new Map()));
  const selectByPoolLabel = input.selectByPoolLabel ?? true;
  for (const group of groups) {
    const pool: Pool = {
      name: group.name,
      ...(group.kernel !== undefined ? { kernel: group.kernel } : {}),
      osTag: group.osTag,
      image: driverImage(driver, group.osTag, group.kernel),
      precompiled: driver.usePrecompiled,
      nodes: group.nodes.map((n) => n.name),
    };
    result.pools.push(pool);
    // Everything the DaemonSet is made of besides the driver spec (the memo's outer key).
    const key = JSON.stringify([
      pool.name, pool.kernel ?? null, pool.osTag, pool.image, pool.precompiled,
      group.nodes.every((n) => n.nfd), [...new Set(group.nodes.map((n) => n.osVersionId))].sort(compare),
      selectByPoolLabel, input.namespace, owner ?? null, input.requiredNodeLabels ?? null,
    ]);
    let ds = memo.get(key);
    if (!ds) {
      ds = renderDaemonSet(pool, group.nodes, driver, input.namespace, owner, selectByPoolLabel);
      if (input.requiredNodeLabels && Object.keys(input.requiredNodeLabels).length > 0) {
        // Labels a node can set on itself are not enough to attract a privileged pod.
        Object.assign(ds.spec.template.spec.nodeSelector, input.requiredNodeLabels);
      }
      if (memo.size >= RENDER_MEMO_MAX) memo.clear();
      memo.set(key, deepFreeze(ds));
    }
    result.daemonSets.push(ds);
  }
  return result;
}

/**
 * DaemonSets already rendered, by the normalized driver spec (one object per policy change: see
 * normalizePolicy) and the rest of their input. The controller renders on every pass, and most
 * passes follow nodes and pods: rendering and hashing 20 templates each time was a tenth of a
 * switch's CPU. Results are frozen, as they are shared.
 */
const RENDERED = new WeakMap<NormalizedDriverSpec, Map<string, DriverDaemonSet>>();
/** Pools are a few dozen; a memo this full holds keys of nodes long gone. */
const RENDER_MEMO_MAX = 1000;

interface PoolGroup {
  name: string;
  kernel?: string;
  osTag: string;
  nodes: GpuNodeFacts[];
}

function groupIntoPools(nodes: readonly GpuNodeFacts[], driver: NormalizedDriverSpec): PoolGroup[] {
  const groups = new Map<string, PoolGroup>();
  for (const node of nodes) {
    const kernel = driver.usePrecompiled ? node.kernel : undefined;
    const name = kernel === undefined ? conventionalDaemonSetName(node.osTag) : precompiledDaemonSetName(kernel, node.osTag);
    let group = groups.get(name);
    if (!group) {
      group = { name, osTag: node.osTag, nodes: [], ...(kernel !== undefined ? { kernel } : {}) };
      groups.set(name, group);
    }
    group.nodes.push(node);
  }
  return [...groups.values()].sort((a, b) => compare(a.name, b.name));
}

/**
 * The driver image of a pool. `repository` is a registry path prefix (`nvcr.io/nvidia`); when
 * it is empty, `image` is taken as the full name, as NVIDIA's operator does.
 */
export function driverImage(driver: NormalizedDriverSpec, osTag: string, kernel?: string): string {
  const version = driver.version ?? "";
  if (version === "") {
    throw new UserError("spec.driver.version is not set: give a full driver version like 550.54.15 (or, with usePrecompiled: true, a branch like 550)");
  }
  const name = imageName(driver.repository, driver.image);
  let ref: string;
  if (driver.usePrecompiled) {
    if (kernel === undefined) throw new Error("precompiled pool without a kernel");
    ref = `${name}:${formatPrecompiledTag({ branch: version, kernel, osTag })}`;
  } else if (version.startsWith("sha256:")) {
    // A digest names one image, so no OS tag can be added: the user chose it for every node.
    ref = `${name}@${version}`;
  } else if (isDriverBranch(version)) {
    // The seed's disable flow sets usePrecompiled back to false and leaves the branch in
    // version; NVIDIA's operator then pulls <branch>-<os-tag>, and so does gpuop (validatePolicy warns).
    if (!isOsTag(osTag)) throw new UserError(`OS tag "${osTag}" is not like ubuntu22.04 or rhel9`);
    ref = `${name}:${version}-${osTag}`;
  } else {
    ref = `${name}:${formatConventionalTag({ version, osTag })}`;
  }
  parseImageRef(ref);
  return ref;
}

function imageName(repository: string | undefined, image: string): string {
  const repo = (repository ?? "").replace(/\/+$/, "");
  return repo === "" ? image : `${repo}/${image}`;
}

function renderDaemonSet(
  pool: Pool,
  nodes: readonly GpuNodeFacts[],
  driver: NormalizedDriverSpec,
  namespace: string,
  owner: RenderInput["ownerRef"],
  selectByPoolLabel: boolean,
): DriverDaemonSet {
  const labels: Record<string, string> = {
    [DRIVER_APP_LABEL]: DRIVER_APP,
    [MANAGED_BY_LABEL]: MANAGED_BY,
    [PRECOMPILED_LABEL]: String(pool.precompiled),
    [POOL_LABEL]: pool.name,
  };
  const ds: DriverDaemonSet = {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: {
      name: pool.name,
      namespace,
      labels: { ...labels },
      annotations: {},
      ...(owner ? { ownerReferences: [{ ...owner, controller: true, blockOwnerDeletion: true }] } : {}),
    },
    spec: {
      // Immutable: app and pool name only, both fixed for the DaemonSet's life.
      selector: { matchLabels: { [DRIVER_APP_LABEL]: DRIVER_APP, [POOL_LABEL]: pool.name } },
      // The driver is replaced only when its pod is deleted (by the upgrade or rollout logic), never by the DaemonSet controller.
      updateStrategy: { type: "OnDelete" },
      template: {
        metadata: { labels: { ...labels }, annotations: { "kubectl.kubernetes.io/default-container": DRIVER_CONTAINER } },
        spec: podSpec(pool, nodes, driver, selectByPoolLabel),
      },
    },
  };
  // The upgrade planner compares a driver pod's copy of this hash with its DaemonSet's (src/core/upgrade.ts).
  ds.spec.template.metadata.annotations[TEMPLATE_HASH_ANNOTATION] = driverTemplateHash(ds.spec.template);
  return ds;
}

/**
 * Which nodes a pool's pods may run on. With NFD's labels on every node of the pool, the OS (and,
 * precompiled, the kernel) labels, so a node whose kernel changed leaves the DaemonSet at once.
 * Where gpuop read a node's kernel or OS from status.nodeInfo, which no selector can match, the
 * pool label alone: gpuop sets it, one value per node, so a node still matches one driver
 * DaemonSet at most. NFD-labelled clusters keep the selectors they had (no DaemonSet changes).
 */
function driverNodeSelector(pool: Pool, nodes: readonly GpuNodeFacts[], selectByPoolLabel: boolean): Pick<PodSpec, "nodeSelector" | "affinity"> {
  if (selectByPoolLabel && !nodes.every((n) => n.nfd)) return { nodeSelector: { [DEPLOY_DRIVER_LABEL]: "true", [POOL_NODE_LABEL]: pool.name }, affinity: requiredAffinity([]) };
  const os = parseOsTag(pool.osTag);
  const nodeSelector: Record<string, string> = { [NFD_OS_ID_LABEL]: os.id };
  const expressions: NodeSelectorRequirement[] = [];
  if (MAJOR_VERSION_ONLY_OS_IDS.includes(os.id)) {
    // The tag keeps the major version only (rhel9) while the label has 9.4: select the
    // VERSION_IDs this pool's nodes have, as equality selectors cannot say "9.*".
    const values = [...new Set(nodes.map((n) => n.osVersionId))].sort(compare);
    expressions.push({ key: NFD_OS_VERSION_ID_LABEL, operator: "In", values });
  } else {
    nodeSelector[NFD_OS_VERSION_ID_LABEL] = os.versionId;
  }
  if (pool.kernel !== undefined) nodeSelector[NFD_KERNEL_LABEL] = pool.kernel;
  nodeSelector[DEPLOY_DRIVER_LABEL] = "true";
  if (selectByPoolLabel) nodeSelector[POOL_NODE_LABEL] = pool.name;
  return { nodeSelector, affinity: requiredAffinity(expressions) };
}

/**
 * One required term: `expressions`, and no driver pod on a node in pod-restart-required. The
 * DaemonSet controller removes every driver pod (of any pool) from a node entering that state and
 * creates none there, so the upgrade planner can wait for the node to have none before it lets the
 * new pod be created (ADR 0005): a node never runs two driver pods at once, and a pool move or an
 * in-place replacement costs no extra node write or pod delete.
 */
function requiredAffinity(expressions: NodeSelectorRequirement[]): NonNullable<PodSpec["affinity"]> {
  return {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [...expressions, { key: UPGRADE_STATE_LABEL, operator: "NotIn", values: [DRIVER_RESTART_STATE] }] }],
      },
    },
  };
}

function podSpec(pool: Pool, nodes: readonly GpuNodeFacts[], driver: NormalizedDriverSpec, selectByPoolLabel: boolean): PodSpec {
  const { nodeSelector, affinity } = driverNodeSelector(pool, nodes, selectByPoolLabel);

  const rdma = driver.rdma?.enabled === true;
  const volumes = new Volumes();
  volumes.hostPath("run-nvidia", "/run/nvidia", "DirectoryOrCreate");
  volumes.hostPath("var-log", "/var/log");
  volumes.hostPath("dev-log", "/dev/log");
  volumes.hostPath("host-os-release", "/etc/os-release");
  volumes.hostPath("host-root", "/");
  volumes.hostPath("host-sys", "/sys", "Directory");
  volumes.hostPath("firmware-search-path", "/sys/module/firmware_class/parameters/path");
  volumes.hostPath("nv-firmware", "/run/nvidia/driver/lib/firmware", "DirectoryOrCreate");
  if (rdma) volumes.hostPath("run-mellanox-drivers", "/run/mellanox/drivers", "DirectoryOrCreate");
  const moduleConfig = driver.kernelModuleConfig?.name;
  if (moduleConfig) volumes.configMap("kernel-module-config", moduleConfig);

  const mounts: VolumeMount[] = [
    { name: "run-nvidia", mountPath: "/run/nvidia", mountPropagation: "Bidirectional" },
    { name: "var-log", mountPath: "/var/log" },
    { name: "dev-log", mountPath: "/dev/log" },
    { name: "host-os-release", mountPath: "/host-etc/os-release", readOnly: true },
    { name: "host-root", mountPath: "/host", readOnly: true, mountPropagation: "HostToContainer" },
    { name: "host-sys", mountPath: "/sys" },
    { name: "firmware-search-path", mountPath: "/sys/module/firmware_class/parameters/path" },
    { name: "nv-firmware", mountPath: "/lib/firmware" },
  ];
  if (rdma) mounts.push({ name: "run-mellanox-drivers", mountPath: "/run/mellanox/drivers", mountPropagation: "HostToContainer" });
  if (moduleConfig) mounts.push({ name: "kernel-module-config", mountPath: "/drivers", readOnly: true });

  const env = new EnvList();
  env.fieldRef("NODE_NAME", "spec.nodeName");
  env.set("KERNEL_MODULE_TYPE", driver.kernelModuleType);
  if (rdma) {
    env.set("GPU_DIRECT_RDMA_ENABLED", "true");
    if (driver.rdma?.useHostMofed) env.set("USE_HOST_MOFED", "true");
  }
  env.setAll(driver.env);
  // The driver runs before any driver exists: with nvidia as the default runtime, anything
  // but void makes the NVIDIA hook fail the container on a reboot, so the policy cannot change it.
  env.set("NVIDIA_VISIBLE_DEVICES", "void");

  const pullPolicy = driver.imagePullPolicy ?? "IfNotPresent";
  const container: Container = {
    name: DRIVER_CONTAINER,
    image: pool.image,
    imagePullPolicy: pullPolicy,
    command: ["nvidia-driver"],
    args: ["init", ...(driver.args ?? [])],
    env: env.list(),
    ...(driver.secretEnv ? { envFrom: [{ secretRef: { name: driver.secretEnv } }] } : {}),
    securityContext: { privileged: true, seLinuxOptions: { level: "s0" } },
    ...(driver.resources ? { resources: resources(driver.resources) } : {}),
    volumeMounts: mounts,
    startupProbe: probe(STARTUP_PROBE_COMMAND, { ...STARTUP_PROBE_DEFAULTS, ...driver.startupProbe }),
    ...(driver.livenessProbe ? { livenessProbe: probe(STARTUP_PROBE_COMMAND, driver.livenessProbe) } : {}),
    ...(driver.readinessProbe ? { readinessProbe: probe(READINESS_PROBE_COMMAND, driver.readinessProbe) } : {}),
    lifecycle: { preStop: { exec: { command: ["/bin/sh", "-c", `rm -f ${DRIVER_READY_FILE}`] } } },
  };

  const spec: PodSpec = {
    serviceAccountName: DRIVER_SERVICE_ACCOUNT,
    // Only the manager calls the API: its token is mounted into it alone (below), never into the driver container.
    automountServiceAccountToken: false,
    priorityClassName: "system-node-critical",
    hostPID: true,
    // In the host's network, cluster DNS still answers only with this policy.
    ...(driver.hostNetwork === true ? { hostNetwork: true, dnsPolicy: "ClusterFirstWithHostNet" } : {}),
    nodeSelector,
    affinity,
    tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
    containers: [container],
    volumes: volumes.list(),
  };
  const secrets = [...new Set([...(driver.imagePullSecrets ?? []), ...(driver.manager?.imagePullSecrets ?? [])])].filter((s) => s !== "");
  if (secrets.length > 0) spec.imagePullSecrets = secrets.map((name) => ({ name }));
  const manager = managerContainer(driver, rdma, pullPolicy);
  if (manager) {
    spec.initContainers = [manager];
    volumes.serviceAccountToken(MANAGER_TOKEN_VOLUME);
  }
  return spec;
}

/** Quantities as strings, as the apiserver stores them (`cpu: 1` comes back as "1"). */
function resources(r: ResourceRequirements): NonNullable<Container["resources"]> {
  const out: NonNullable<Container["resources"]> = {};
  for (const key of ["limits", "requests"] as const) {
    const list = r[key];
    if (list && Object.keys(list).length > 0) out[key] = Object.fromEntries(Object.entries(list).map(([k, v]) => [k, String(v)]));
  }
  return out;
}

/**
 * The startup probe, written inline (not a script in the image) so it works with NVIDIA's
 * images as well as gpuop's: the module is loaded and nvidia-smi answers, then the driver is
 * marked ready for the operands that wait on it.
 */
export const STARTUP_PROBE_COMMAND = [
  "/bin/sh",
  "-c",
  `test -e /sys/module/nvidia/refcnt && nvidia-smi >/dev/null && mkdir -p ${DRIVER_READY_FILE.slice(0, DRIVER_READY_FILE.lastIndexOf("/"))} && touch ${DRIVER_READY_FILE}`,
];
const READINESS_PROBE_COMMAND = ["/bin/sh", "-c", `test -e ${DRIVER_READY_FILE}`];

function probe(command: string[], spec: ContainerProbeSpec): Probe {
  const p: Probe = { exec: { command: [...command] } };
  for (const key of ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] as const) {
    const v = spec[key];
    // 0 is each field's "unset" (the apiserver drops it); rendering it would never compare equal.
    if (v !== undefined && v !== 0) p[key] = v;
  }
  return p;
}

/** The k8s-driver-manager init container: evicts GPU pods and unloads the old driver first. */
function managerContainer(driver: NormalizedDriverSpec, rdma: boolean, defaultPullPolicy: string): Container | undefined {
  const m = driver.manager;
  if (!m?.image) return undefined;
  const name = imageName(m.repository, m.image);
  const image = m.version ? (m.version.startsWith("sha256:") ? `${name}@${m.version}` : `${name}:${m.version}`) : name;
  parseImageRef(image);
  const drain = driver.upgradePolicy?.drain;
  const env = new EnvList();
  env.fieldRef("NODE_NAME", "spec.nodeName");
  env.fieldRef("OPERATOR_NAMESPACE", "metadata.namespace");
  env.set("NVIDIA_VISIBLE_DEVICES", "void");
  env.set("ENABLE_GPU_POD_EVICTION", "true");
  env.set("ENABLE_AUTO_DRAIN", String(drain?.enable ?? false));
  env.set("DRAIN_USE_FORCE", String(drain?.force ?? false));
  env.set("DRAIN_POD_SELECTOR_LABEL", drain?.podSelector ?? "");
  env.set("DRAIN_TIMEOUT_SECONDS", `${drain?.timeoutSeconds ?? 300}s`);
  env.set("DRAIN_DELETE_EMPTYDIR_DATA", String(drain?.deleteEmptyDir ?? false));
  env.setAll(m.env);
  const mounts: VolumeMount[] = [
    { name: "run-nvidia", mountPath: "/run/nvidia", mountPropagation: "Bidirectional" },
    { name: "host-root", mountPath: "/host", readOnly: true, mountPropagation: "HostToContainer" },
    { name: "host-sys", mountPath: "/sys" },
    { name: MANAGER_TOKEN_VOLUME, mountPath: SERVICE_ACCOUNT_MOUNT_PATH, readOnly: true },
  ];
  if (rdma) mounts.push({ name: "run-mellanox-drivers", mountPath: "/run/mellanox/drivers", mountPropagation: "HostToContainer" });
  return {
    name: DRIVER_MANAGER_CONTAINER,
    image,
    imagePullPolicy: m.imagePullPolicy ?? defaultPullPolicy,
    command: ["driver-manager"],
    args: ["uninstall_driver"],
    env: env.list(),
    securityContext: { privileged: true },
    volumeMounts: mounts,
  };
}

/** Env vars by name, first-set order kept; a later value replaces an earlier one (the policy's win), so names stay unique as server-side apply requires. */
class EnvList {
  #vars = new Map<string, ContainerEnv>();
  set(name: string, value: string): void {
    // The apiserver drops an empty value; leaving it out keeps rendered and stored objects equal.
    this.#vars.set(name, value === "" ? { name } : { name, value });
  }
  fieldRef(name: string, fieldPath: string): void {
    this.#vars.set(name, { name, valueFrom: { fieldRef: { fieldPath } } });
  }
  setAll(vars: readonly EnvVar[] | undefined): void {
    for (const v of vars ?? []) this.set(v.name, v.value ?? "");
  }
  list(): ContainerEnv[] {
    return [...this.#vars.values()];
  }
}

class Volumes {
  #volumes: Volume[] = [];
  hostPath(name: string, path: string, type?: string): void {
    this.#volumes.push({ name, hostPath: type ? { path, type } : { path } });
  }
  configMap(name: string, configMap: string): void {
    this.#volumes.push({ name, configMap: { name: configMap } });
  }
  /** What automountServiceAccountToken would mount, as a volume that can be mounted into one container. */
  serviceAccountToken(name: string): void {
    this.#volumes.push({
      name,
      projected: {
        sources: [
          { serviceAccountToken: { path: "token", expirationSeconds: 3607 } },
          { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
          { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } },
        ],
      },
    });
  }
  list(): Volume[] {
    return this.#volumes;
  }
}

/**
 * The DaemonSet with its driver container pinned to `digest` (`<repo>/driver:<tag>@sha256:…`), so
 * every node of the pool runs the same bits and a republished tag rolls like a version change.
 * An image that already names a digest is left as it is.
 */
export function pinDriverDigest(ds: DriverDaemonSet, digest: string): DriverDaemonSet {
  const out = structuredClone(ds);
  for (const c of out.spec.template.spec.containers) {
    if (c.name === DRIVER_CONTAINER && !c.image.includes("@")) c.image = `${c.image}@${digest}`;
  }
  return out;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
