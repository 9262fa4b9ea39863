import { UserError } from "./errors.ts";
import { parseImageRef } from "./image.ts";
import { isDnsSubdomain } from "./names.ts";

/**
 * Limits on what a ClusterPolicy may put into the privileged, hostPID driver pods (see
 * docs/security.md). Pure checks; validatePolicy turns their findings into policy errors.
 */

/**
 * Variables the driver entrypoint (images/driver/common/nvidia-driver) reads as its own
 * configuration: host paths, the probe it executes, the daemon stop timeout. Only its tests may
 * set them; from a policy they would point a root process at other files or commands.
 */
export const ENTRYPOINT_VARIABLES: readonly string[] = [
  "ROOT",
  "SYSFS_ROOT",
  "PROC_ROOT",
  "RUN_DIR",
  "DRIVER_CONFIG_DIR",
  "MODPROBE_DIR",
  "IMAGE_INFO_DIR",
  "PERSISTENCED_PID_FILE",
  "FABRICMANAGER_PID_FILE",
  "FABRICMANAGER_CONFIG",
  "DRIVER_ROOT_SOURCE",
  "FIRMWARE_SEARCH_PATH",
  "DAEMON_STOP_TIMEOUT",
  "STARTUP_PROBE",
];

/**
 * Variables that change which program runs or make a shell run code: the loader's (LD_*),
 * the command search path, and bash's start-up hooks and exported functions.
 */
const EXECUTION_VARIABLES = new Set(["PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "CDPATH", "GLOBIGNORE"]);

/** Why a variable may not be set from the policy, or undefined when it may. */
export function forbiddenEnvReason(name: string, container: "driver" | "manager"): string | undefined {
  if (name.startsWith("LD_")) return "it changes which libraries the dynamic loader loads into every program of the privileged container";
  if (name.startsWith("BASH_FUNC_")) return "it defines a shell function that replaces a command the container's scripts run";
  if (EXECUTION_VARIABLES.has(name)) return "it changes which program or shell code the privileged container runs";
  if (container === "driver" && ENTRYPOINT_VARIABLES.includes(name)) {
    return "it is the driver entrypoint's own setting (a host path, probe or timeout), which only its tests may change";
  }
  return undefined;
}

/**
 * Image repositories the operator may deploy: `nvcr.io/nvidia` allows that repository and
 * everything under it; a bare registry host (`registry.example.com:5000`) allows all of it.
 * Empty: every repository (the default, as NVIDIA's operator).
 */
export class RepositoryAllowList {
  readonly entries: readonly string[];

  constructor(entries: readonly string[]) {
    this.entries = [...new Set(entries.map(normalizeAllowEntry))].sort();
  }

  get enabled(): boolean {
    return this.entries.length > 0;
  }

  /** Whether `image` (a reference or a bare name) lies under an entry. */
  allows(image: string): boolean {
    if (!this.enabled) return true;
    const name = imageName(image);
    return this.entries.some((e) => name === e || name.startsWith(`${e}/`));
  }
}

/** `registry/repository` of an image, normalised as the registry client sees it. */
function imageName(image: string): string {
  const ref = parseImageRef(image);
  return `${ref.registry}/${ref.repository}`;
}

function normalizeAllowEntry(entry: string): string {
  const e = entry.trim().replace(/\/+$/, "");
  const fix = `give registry hosts or repositories like nvcr.io/nvidia or registry.example.com:5000`;
  if (e === "") throw new UserError(`the image repository allow-list has an empty entry: ${fix}`);
  const last = e.slice(e.lastIndexOf("/") + 1);
  if (e.includes("@") || (e.includes("/") && last.includes(":"))) {
    throw new UserError(`image repository allow-list entry "${entry}" names a tag or digest: ${fix}`);
  }
  const first = e.split("/")[0] ?? "";
  const isHost = first.includes(".") || first.includes(":") || first === "localhost";
  if (!isHost) {
    throw new UserError(e.includes("/")
      ? `image repository allow-list entry "${entry}" has no registry host: write it in full, like docker.io/${e}`
      : `image repository allow-list entry "${entry}" is neither a registry host nor a repository with its registry: ${fix}`);
  }
  // Checked with a placeholder last component, so that docker.io/library stays itself
  // (a single name under docker.io would become library/<name>).
  let ref;
  try {
    ref = parseImageRef(`${e}/x/x`);
  } catch (err) {
    throw new UserError(`image repository allow-list entry "${entry}" is not a registry or repository name: ${(err as Error).message}`);
  }
  const path = ref.repository.slice(0, -"/x/x".length);
  return path === "" ? ref.registry : `${ref.registry}/${path}`;
}

/** Kubernetes object names the policy refers to must be DNS-1123 subdomains, or they could walk other API paths. */
export function isObjectName(name: string): boolean {
  return isDnsSubdomain(name);
}

// C0 and C1 controls and DEL, but not tab or newline; bidi overrides and zero-width characters
// that can make one text look like another.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text from a registry or a policy, made safe for Events, logs and terminals: control
 * characters (escape sequences above all) become U+FFFD, so they cannot recolour, move the
 * cursor or hide text.
 */
export function stripControl(text: string, opts: { newlines?: boolean } = {}): string {
  const out = text.replace(CONTROL, "\uFFFD");
  return opts.newlines === false ? out.replace(/[\r\n\t]/g, " ") : out;
}

/** Labels under this prefix can be set by an admin but not by a kubelet on its own node (NodeRestriction). */
export const NODE_RESTRICTION_PREFIX = "node-restriction.kubernetes.io/";

/** An admin-only label every GPU node must carry before gpuop labels it or runs a driver on it. */
export interface RestrictedNodeLabel {
  key: string;
  value: string;
}

/** Parses `key` or `key=value` (value defaults to "true"); the key must be under node-restriction.kubernetes.io/. */
export function parseRestrictedNodeLabel(text: string): RestrictedNodeLabel {
  const [key = "", value = "true", ...rest] = text.trim().split("=");
  const fix = `give a label like ${NODE_RESTRICTION_PREFIX}nvidia-gpu=true, set by the cluster admin on GPU nodes`;
  if (rest.length > 0) throw new UserError(`GPU node label "${text}" has more than one '=': ${fix}`);
  if (!key.startsWith(NODE_RESTRICTION_PREFIX)) {
    throw new UserError(`GPU node label "${text}" is not under ${NODE_RESTRICTION_PREFIX}: a kubelet may set other labels on its own node, which would let any node attract a driver pod; ${fix}`);
  }
  const name = key.slice(NODE_RESTRICTION_PREFIX.length);
  if (!/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(name) || !/^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/.test(value)) {
    throw new UserError(`GPU node label "${text}" is not a valid label: ${fix}`);
  }
  return { key, value };
}

/** The nodes that carry the admin-only label; all nodes when none is required. */
export function restrictedNodes<N extends { metadata: { labels?: Record<string, string> } }>(nodes: readonly N[], label: RestrictedNodeLabel | undefined): N[] {
  if (!label) return [...nodes];
  return nodes.filter((n) => n.metadata.labels?.[label.key] === label.value);
}
