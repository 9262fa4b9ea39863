import { UserError } from "./errors.ts";
import { classifyNodes, type GpuNodeFacts, type NodeLike } from "./gpu-node.ts";
import { parseImageRef } from "./image.ts";
import { renderDriverDaemonSets } from "./render.ts";
import { normalizePolicy, type ClusterPolicy, type NormalizedClusterPolicy } from "./policy.ts";
import { forbiddenEnvReason, isObjectName, RepositoryAllowList } from "./security.ts";
import { checkPrecompiledSupport, isNvidiaRepository } from "./support.ts";
import { driverBranchOf, isDriverBranch, isFullDriverVersion } from "./tag.ts";

/**
 * Checks a ClusterPolicy against what can work, before anything is changed. With an error the
 * controller sets the policy notReady and leaves the existing DaemonSets as they are, so a
 * mistake in the policy never takes a driver away. Node problems (missing NFD labels) are not
 * policy errors: the rest of the cluster is still served (see renderDriverDaemonSets).
 */

export interface PolicyProblem {
  /** CamelCase, for the Error condition's reason and the Event. */
  reason: PolicyProblemReason;
  /** Says what is wrong and what to change. */
  message: string;
  /** The spec field to change, e.g. `spec.driver.version`. */
  field?: string;
  /** GPU nodes the problem concerns, sorted (UnsupportedPlatform). */
  nodes?: string[];
}

export type PolicyProblemReason =
  | "InvalidSpec"
  | "VersionMissing"
  | "VersionNotABranch"
  | "VersionIsDigest"
  | "VersionNotAFullVersion"
  | "ConventionalVersionIsBranch"
  | "PrecompiledConflictsWithGDS"
  | "PrecompiledConflictsWithGDRCopy"
  | "PrecompiledConflictsWithVGPU"
  | "UnsupportedPlatform"
  | "InvalidImageReference"
  | "ForbiddenEnv"
  | "ImageNotAllowed"
  | "InvalidObjectName";

export interface PolicyValidation {
  /** Any error makes the policy invalid. */
  errors: PolicyProblem[];
  /** Worth an Event, but the policy is acted on. */
  warnings: PolicyProblem[];
}

/** Node names in a message: enough to act on, bounded for 1,000-node clusters. */
const NODES_IN_MESSAGE = 10;

export interface ValidateOptions {
  /** The operator's image repository allow-list (--allowed-image-repositories); empty allows all. */
  allowedRepositories?: RepositoryAllowList;
}

export function validatePolicy(policy: ClusterPolicy, nodes: readonly (NodeLike | GpuNodeFacts)[], opts: ValidateOptions = {}): PolicyValidation {
  const result: PolicyValidation = { errors: [], warnings: [] };
  let p: NormalizedClusterPolicy;
  try {
    p = normalizePolicy(policy);
  } catch (err) {
    if (err instanceof UserError) {
      result.errors.push({ reason: "InvalidSpec", message: err.message });
      return result;
    }
    throw err;
  }
  const driver = p.spec.driver;
  if (!driver.enabled) return result;

  checkImageReference(p, result);
  checkEnv(p, result);
  checkObjectNames(p, result);
  const version = driver.version ?? "";
  if (version === "") {
    result.errors.push({
      reason: "VersionMissing",
      field: "spec.driver.version",
      message: driver.usePrecompiled
        ? "spec.driver.version is not set: with usePrecompiled: true set it to a driver branch such as 550 (or start the operator with --default-driver-version)"
        : "spec.driver.version is not set: set it to a full driver version such as 550.54.15 (or start the operator with --default-driver-version)",
    });
  }
  if (driver.usePrecompiled) checkPrecompiled(p, version, nodes, result);
  else if (version !== "") checkConventionalVersion(version, result);
  if (result.errors.length === 0) {
    // Whatever the checks above missed (a tag too long for a registry, say) must surface here,
    // not as a failed render after the policy was accepted.
    try {
      const { daemonSets } = renderDriverDaemonSets({ policy: p, nodes, namespace: "validate" });
      if (opts.allowedRepositories?.enabled) checkAllowedImages(p, daemonSets, opts.allowedRepositories, result);
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      result.errors.push({ reason: "InvalidSpec", message: `no driver image can be formed: ${err.message}; set spec.driver.repository, image and version so that one can, or set spec.driver.usePrecompiled to false` });
    }
  }
  return result;
}

function checkPrecompiled(p: NormalizedClusterPolicy, version: string, nodes: readonly (NodeLike | GpuNodeFacts)[], result: PolicyValidation): void {
  const spec = p.spec;
  const turnOff = (field: string) => `set ${field} to false, or spec.driver.usePrecompiled to false`;
  if (spec.gds?.enabled === true) {
    result.errors.push({
      reason: "PrecompiledConflictsWithGDS",
      field: "spec.gds.enabled",
      message: `precompiled driver containers do not support GPUDirect Storage (GDS), and spec.gds.enabled is true: ${turnOff("spec.gds.enabled")}`,
    });
  }
  if (spec.gdrcopy?.enabled === true) {
    result.errors.push({
      reason: "PrecompiledConflictsWithGDRCopy",
      field: "spec.gdrcopy.enabled",
      message: `precompiled driver containers do not support GDRCopy, and spec.gdrcopy.enabled is true: ${turnOff("spec.gdrcopy.enabled")}`,
    });
  }
  for (const field of vgpuFields(p)) {
    result.errors.push({
      reason: "PrecompiledConflictsWithVGPU",
      field,
      message: `precompiled driver containers do not support NVIDIA vGPU, and ${field} is set: ${field.endsWith(".enabled") ? turnOff(field) : `remove ${field}, or set spec.driver.usePrecompiled to false`}`,
    });
  }

  if (version === "") return;
  if (version.startsWith("sha256:")) {
    result.errors.push({
      reason: "VersionIsDigest",
      field: "spec.driver.version",
      message: `spec.driver.version is a digest (${version.slice(0, 19)}…), but precompiled images are tagged <branch>-<kernel>-<os-tag>, one per kernel: set it to a driver branch such as 550, or set usePrecompiled to false`,
    });
    return;
  }
  if (!isDriverBranch(version)) {
    result.errors.push({
      reason: "VersionNotABranch",
      field: "spec.driver.version",
      message: isFullDriverVersion(version)
        ? `spec.driver.version "${version}" is a full driver version, but precompiled images are tagged by driver branch: set it to "${driverBranchOf(version)}"`
        : `spec.driver.version "${version}" is not a driver branch: with usePrecompiled: true set it to a branch such as 550`,
    });
    return;
  }
  checkPlatforms(p, version, nodes, result);
}

/** The vGPU settings that are on; NVIDIA's operator does not check these, but no precompiled image has a vGPU driver. */
function vgpuFields(p: NormalizedClusterPolicy): string[] {
  const spec = p.spec;
  const fields: string[] = [];
  if (spec.vgpuManager?.enabled === true) fields.push("spec.vgpuManager.enabled");
  if (spec.vgpuDeviceManager?.enabled === true) fields.push("spec.vgpuDeviceManager.enabled");
  if (spec.sandboxWorkloads?.enabled === true && spec.sandboxWorkloads["defaultWorkload"] === "vm-vgpu") {
    fields.push("spec.sandboxWorkloads.enabled");
  }
  // A licensing config is what turns the driver into a vGPU guest driver.
  const licensing = spec.driver.licensingConfig;
  if (licensing?.configMapName || licensing?.secretName) fields.push("spec.driver.licensingConfig");
  return fields;
}

/** For NVIDIA's repository: the deployable nodes whose OS, architecture or kernel flavor have no published image. */
function checkPlatforms(p: NormalizedClusterPolicy, branch: string, nodes: readonly (NodeLike | GpuNodeFacts)[], result: PolicyValidation): void {
  const repository = p.spec.driver.repository ?? "";
  if (!isNvidiaRepository(repository)) return;
  const byReason = new Map<string, string[]>();
  // Thousands of nodes share a few kernels: check each platform once.
  const byPlatform = new Map<string, string[]>();
  for (const node of classifyNodes(nodes).gpuNodes) {
    if (!node.deployable || node.arch === "") continue;
    const platform = `${node.kernel} ${node.osTag} ${node.arch}`;
    let reasons = byPlatform.get(platform);
    if (!reasons) {
      try {
        reasons = checkPrecompiledSupport({ repository, branch, kernel: node.kernel, osTag: node.osTag, arch: node.arch }).reasons;
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        reasons = [err.message];
      }
      byPlatform.set(platform, reasons);
    }
    if (reasons.length === 0) continue;
    const key = reasons.join("; ");
    const list = byReason.get(key) ?? [];
    list.push(node.name);
    byReason.set(key, list);
  }
  for (const [reasons, names] of [...byReason.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const shown = names.length > NODES_IN_MESSAGE ? `${names.slice(0, NODES_IN_MESSAGE).join(", ")} and ${names.length - NODES_IN_MESSAGE} more` : names.join(", ");
    result.errors.push({
      reason: "UnsupportedPlatform",
      field: "spec.driver.repository",
      message: `${reasons} (GPU node${names.length > 1 ? "s" : ""} ${shown})`,
      nodes: names,
    });
  }
}

function checkConventionalVersion(version: string, result: PolicyValidation): void {
  if (isFullDriverVersion(version)) return;
  if (version.startsWith("sha256:")) {
    if (/^sha256:[a-f0-9]{64}$/.test(version)) return;
    result.errors.push({
      reason: "VersionNotAFullVersion",
      field: "spec.driver.version",
      message: `spec.driver.version "${version}" is not a digest: set it to sha256: followed by 64 lower-case hex digits, or to a full driver version such as 550.54.15`,
    });
    return;
  }
  if (isDriverBranch(version)) {
    // The seed's disable flow leaves the branch in version; NVIDIA's operator then pulls
    // <branch>-<os-tag>, and gpuop does the same rather than refuse the documented flow.
    result.warnings.push({
      reason: "ConventionalVersionIsBranch",
      field: "spec.driver.version",
      message: `spec.driver.version "${version}" is a driver branch, so conventional images are pulled as ${version}-<os-tag>; NVIDIA tags its conventional images by full version: if the pull fails, set version to a full version of that branch from the image's tags (like 550.54.15 for 550)`,
    });
    return;
  }
  result.errors.push({
    reason: "VersionNotAFullVersion",
    field: "spec.driver.version",
    message: `spec.driver.version "${version}" is neither a full driver version nor a digest: set it to a version such as 550.54.15 (images are tagged <version>-<os-tag>), or a sha256: digest`,
  });
}

function checkImageReference(p: NormalizedClusterPolicy, result: PolicyValidation): void {
  const driver = p.spec.driver;
  const check = (field: string, repository: string | undefined, image: string | undefined) => {
    const repo = (repository ?? "").replace(/\/+$/, "");
    const name = repo === "" ? (image ?? "") : `${repo}/${image ?? ""}`;
    try {
      // A placeholder tag: the real one depends on the node; only the name is checked here.
      parseImageRef(`${name}:tag`);
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      result.errors.push({
        reason: "InvalidImageReference",
        field,
        message: `${field}.repository and ${field}.image do not form an image name: ${err.message.replace(`image reference "${name}:tag"`, `"${name}"`)}; set them like repository: nvcr.io/nvidia, image: driver`,
      });
    }
  };
  check("spec.driver", driver.repository, driver.image);
  if (driver.manager?.image) check("spec.driver.manager", driver.manager.repository, driver.manager.image);
}

/** Environment that would change what the privileged containers run is refused, whatever its value. */
function checkEnv(p: NormalizedClusterPolicy, result: PolicyValidation): void {
  const lists = [
    { field: "spec.driver.env", container: "driver" as const, env: p.spec.driver.env ?? [] },
    { field: "spec.driver.manager.env", container: "manager" as const, env: p.spec.driver.manager?.env ?? [] },
  ];
  for (const { field, container, env } of lists) {
    for (const { name } of env) {
      const why = forbiddenEnvReason(name, container);
      if (why === undefined) continue;
      result.errors.push({
        reason: "ForbiddenEnv",
        field,
        message: `${field} sets ${JSON.stringify(name)}, which a ClusterPolicy may not set: ${why}; remove it from ${field}`,
      });
    }
  }
}

/** Names the policy gives to Secrets and ConfigMaps become API paths and pod fields: they must be object names. */
function checkObjectNames(p: NormalizedClusterPolicy, result: PolicyValidation): void {
  const driver = p.spec.driver;
  const named: [string, string | undefined][] = [
    ...(driver.imagePullSecrets ?? []).map((n, i): [string, string] => [`spec.driver.imagePullSecrets[${i}]`, n]),
    ...(driver.manager?.imagePullSecrets ?? []).map((n, i): [string, string] => [`spec.driver.manager.imagePullSecrets[${i}]`, n]),
    ["spec.driver.secretEnv", driver.secretEnv],
    ["spec.driver.kernelModuleConfig.name", driver.kernelModuleConfig?.name],
  ];
  for (const [field, name] of named) {
    if (name === undefined || name === "" || isObjectName(name)) continue;
    result.errors.push({
      reason: "InvalidObjectName",
      field,
      message: `${field} is ${JSON.stringify(name)}, which is not a Kubernetes object name: use lower-case letters, digits, '-' and '.' (at most 253), the name of an object in the operator's namespace`,
    });
  }
}

/** Every image the policy renders (driver and manager, every pool) must lie under the operator's allow-list. */
function checkAllowedImages(p: NormalizedClusterPolicy, daemonSets: readonly { spec: { template: { spec: { containers: { image: string }[]; initContainers?: { image: string }[] } } } }[], allow: RepositoryAllowList, result: PolicyValidation): void {
  const images = new Map<string, string>();
  const driver = p.spec.driver;
  // By name as well as rendered: a policy with no GPU node yet renders no DaemonSet.
  images.set(imageNameOf(driver.repository, driver.image), "spec.driver");
  if (driver.manager?.image) images.set(imageNameOf(driver.manager.repository, driver.manager.image), "spec.driver.manager");
  for (const ds of daemonSets) {
    const pod = ds.spec.template.spec;
    for (const c of pod.initContainers ?? []) if (!images.has(c.image)) images.set(c.image, "spec.driver.manager");
    for (const c of pod.containers) if (!images.has(c.image)) images.set(c.image, "spec.driver");
  }
  const refused = new Map<string, string[]>();
  for (const [image, field] of images) {
    if (allow.allows(image)) continue;
    refused.set(field, [...(refused.get(field) ?? []), image]);
  }
  for (const [field, list] of refused) {
    result.errors.push({
      reason: "ImageNotAllowed",
      field: `${field}.repository`,
      message: `${field} renders image ${list.sort().join(", ")}, which is outside the operator's allowed image repositories (${allow.entries.join(", ")}): set ${field}.repository and image to an allowed repository, or ask the cluster admin to add it to the operator's --allowed-image-repositories`,
    });
  }
}

function imageNameOf(repository: string | undefined, image: string | undefined): string {
  const repo = (repository ?? "").replace(/\/+$/, "");
  return repo === "" ? (image ?? "") : `${repo}/${image ?? ""}`;
}
