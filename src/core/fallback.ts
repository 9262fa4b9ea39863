// The conventional fallback: a GPU node whose precompiled driver image is
// missing from the registry, or cannot be pulled on the node, runs the
// conventional driver of the same branch for its OS (the container compiles
// the modules on the node) instead of running no driver at all. Pure: the
// controller and `gpuop preflight` bring the registry's answers.
import { compareVersionsDesc } from "./catalog.ts";
import { UserError } from "./errors.ts";
import { parseKernel } from "./kernel.ts";
import { parseOsTag } from "./os.ts";
import { conventionalDaemonSetName } from "./names.ts";
import type { ClusterPolicy, NormalizedDriverSpec } from "./policy.ts";
import { driverImage, renderDriverDaemonSets, type DriverDaemonSet, type Pool, type RenderInput } from "./render.ts";
import { driverBranchOf, isConventionalTag, parseConventionalTag } from "./tag.ts";

/** ClusterPolicy annotation: "false" turns the fallback off for this policy, "true" on (the CRD is NVIDIA's: no spec field). */
export const FALLBACK_ANNOTATION = "gpuop.nvidia.com/conventional-fallback";
/**
 * Node annotation: the precompiled image whose pull failed on this node past the grace period.
 * The node stays on the fallback until its precompiled image changes (new kernel or branch) or
 * someone removes the annotation; without it every recheck would send the node back into the
 * same pull failure.
 */
export const PULL_FAILED_ANNOTATION = "gpuop.nvidia.com/precompiled-pull-failed";
/** Node annotation: why the node is not on its precompiled driver (fallback, or none); read by `gpuop status`. */
export const FALLBACK_REASON_ANNOTATION = "gpuop.nvidia.com/driver-fallback";
/** Waiting reasons of a container whose image cannot be pulled. */
export const PULL_FAILURE_REASONS: readonly string[] = ["ErrImagePull", "ImagePullBackOff"];
/** How long a precompiled driver pod may fail to pull before its node falls back. */
export const DEFAULT_PULL_GRACE_MS = 5 * 60_000;

/**
 * The newest full driver version of `branch` the registry holds for `osTag`, from its tag
 * list: `525` with [`525.60.13-ubuntu22.04`, `525.105.17-ubuntu22.04`] gives `525.105.17`.
 */
export function newestConventionalVersion(branch: string, osTag: string, tags: readonly string[]): string | undefined {
  const versions = tags
    .filter(isConventionalTag)
    .map(parseConventionalTag)
    .filter((t) => t.osTag === osTag && driverBranchOf(t.version) === branch)
    .map((t) => t.version);
  return versions.sort(compareVersionsDesc)[0];
}

/**
 * Whether the fallback is on: the policy's annotation ("true"/"false") wins over the operator's
 * flag. Any other value is ignored with a warning, so a typo never takes a driver away.
 */
export function fallbackEnabled(operatorDefault: boolean, policyAnnotations: Readonly<Record<string, string>> | undefined): { enabled: boolean; warning?: string } {
  const value = policyAnnotations?.[FALLBACK_ANNOTATION];
  if (value === undefined) return { enabled: operatorDefault };
  const v = value.trim().toLowerCase();
  if (v === "true" || v === "false") return { enabled: v === "true" };
  return { enabled: operatorDefault, warning: `annotation ${FALLBACK_ANNOTATION}="${value}" is neither "true" nor "false"; the operator's setting (${operatorDefault ? "on" : "off"}) applies` };
}

/** The parts of a pod the pull-failure check reads. */
export interface PodPullState {
  metadata: { creationTimestamp?: string };
  spec?: { containers?: readonly { name: string; image: string }[] };
  status?: {
    startTime?: string;
    conditions?: readonly { type: string; status: string; lastTransitionTime?: string }[];
    containerStatuses?: readonly { name: string; image?: string; state?: Readonly<Record<string, { reason?: string } | undefined>> }[];
  };
}

export interface PullFailure {
  /** The image that cannot be pulled. */
  image: string;
  reason: string;
  /** Since when the pod has been without a ready container (from the pod's own status, so a restart of the operator keeps it). */
  since: string;
  /** Milliseconds of the grace period left; 0 once it is over. */
  remainingMs: number;
}

/**
 * A driver pod whose container waits on an image it cannot pull, and for how long. The start
 * is the pod's ContainersReady transition (or its start or creation), all kept by the API
 * server: the grace period survives an operator restart.
 */
export function pullFailure(pod: PodPullState, container: string, nowMs: number, graceMs: number): PullFailure | undefined {
  const status = pod.status?.containerStatuses?.find((c) => c.name === container);
  const reason = status?.state?.waiting?.reason;
  if (!reason || !PULL_FAILURE_REASONS.includes(reason)) return undefined;
  // The pool's tag, without the digest the operator pins it to: the node's plan names the tag.
  const image = (pod.spec?.containers?.find((c) => c.name === container)?.image ?? status?.image ?? "").replace(/@sha256:[0-9a-f]{64}$/, "");
  const notReady = pod.status?.conditions?.find((c) => c.type === "ContainersReady" && c.status !== "True")?.lastTransitionTime;
  const since = notReady ?? pod.status?.startTime ?? pod.metadata.creationTimestamp;
  if (!since || Number.isNaN(Date.parse(since))) return { image, reason, since: new Date(nowMs).toISOString(), remainingMs: graceMs };
  return { image, reason, since, remainingMs: Math.max(0, Date.parse(since) + graceMs - nowMs) };
}

/** Why a node does not run its precompiled driver. */
export type FallbackCause = "missing" | "pull-failed";

/** What one GPU node gets from the active precompiled policy. */
export type NodeDriverPlan =
  | { node: string; osTag: string; mode: "precompiled"; pool: string; image: string }
  | { node: string; osTag: string; mode: "fallback"; pool: string; image: string; version: string; precompiledImage: string; cause: FallbackCause; reason: string }
  | { node: string; osTag: string; mode: "none"; precompiledImage: string; cause: FallbackCause; reason: string };

/** The registry's answer about the conventional image of the policy's branch for one OS tag. */
export type ConventionalAnswer =
  | { found: true; version: string; image: string }
  | { found: false; reason: string };

export interface NodePrecompiled {
  node: string;
  osTag: string;
  /** The precompiled pool (DaemonSet) for the node's kernel. */
  pool: string;
  image: string;
  /** The registry said the image does not exist (for the node's architecture). */
  missing: boolean;
  /** The image named by the node's pull-failed annotation, if any. */
  pullFailedImage?: string;
}

/**
 * Decides one node: its precompiled pool when the image is there and pulls; else the
 * conventional DaemonSet of its OS when the fallback is on and the registry has a conventional
 * image of the branch; else no driver, with the reason in words.
 */
export function decideNodeDriver(n: NodePrecompiled, conventional: ConventionalAnswer | undefined, enabled: boolean): NodeDriverPlan {
  const pullFailed = n.pullFailedImage !== undefined && n.pullFailedImage === n.image;
  if (!n.missing && !pullFailed) return { node: n.node, osTag: n.osTag, mode: "precompiled", pool: n.pool, image: n.image };
  const cause: FallbackCause = n.missing ? "missing" : "pull-failed";
  const why = n.missing ? `the registry has no precompiled image ${n.image}` : `its precompiled image ${n.image} could not be pulled on the node`;
  const none = (reason: string): NodeDriverPlan => ({ node: n.node, osTag: n.osTag, mode: "none", precompiledImage: n.image, cause, reason });
  if (!enabled) return none(`${why}, and the conventional fallback is turned off`);
  if (!conventional) return none(`${why}, and the conventional image was not looked up`);
  if (!conventional.found) return none(`${why}, and ${conventional.reason}`);
  return {
    node: n.node,
    osTag: n.osTag,
    mode: "fallback",
    pool: conventionalDaemonSetName(n.osTag),
    image: conventional.image,
    version: conventional.version,
    precompiledImage: n.image,
    cause,
    reason: why,
  };
}

/** The conventional image of `version` for an OS tag, named as the policy names its images. */
export function conventionalImage(driver: NormalizedDriverSpec, version: string, osTag: string): string {
  return driverImage({ ...driver, usePrecompiled: false, version }, osTag);
}

/**
 * Resolves the branch to a conventional image for an OS tag from the repository's tags.
 * `tags` undefined means the tags could not be listed (`listError` says why).
 */
export function resolveConventional(driver: NormalizedDriverSpec, osTag: string, tags: readonly string[] | undefined, listError?: string): ConventionalAnswer {
  const branch = driverBranchOf(driver.version ?? "");
  if (tags === undefined) return { found: false, reason: `the conventional ${branch} images could not be listed (${listError ?? "unknown error"})` };
  const version = newestConventionalVersion(branch, osTag, tags);
  if (!version) return { found: false, reason: `the registry has no conventional ${branch} image for ${osTag} either (a tag like ${branch}.<minor>.<patch>-${osTag})` };
  return { found: true, version, image: conventionalImage(driver, version, osTag) };
}

/**
 * The conventional DaemonSets for the nodes on the fallback, one per OS tag, rendered exactly as a
 * conventional policy of the resolved version would render them, so a node moves between its
 * precompiled and its fallback pool by its pool label alone.
 */
export function renderFallbackDaemonSets(
  input: Omit<RenderInput, "policy" | "selectByPoolLabel"> & { policy: ClusterPolicy },
  plans: readonly NodeDriverPlan[],
): { daemonSets: DriverDaemonSet[]; pools: Pool[] } {
  const byOs = new Map<string, { version: string; nodes: Set<string> }>();
  for (const p of plans) {
    if (p.mode !== "fallback") continue;
    const entry = byOs.get(p.osTag) ?? { version: p.version, nodes: new Set<string>() };
    entry.nodes.add(p.node);
    byOs.set(p.osTag, entry);
  }
  const daemonSets: DriverDaemonSet[] = [];
  const pools: Pool[] = [];
  for (const [, { version, nodes }] of [...byOs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const driver = { ...input.policy.spec?.driver, usePrecompiled: false, version };
    const rendered = renderDriverDaemonSets({
      ...input,
      policy: { ...input.policy, spec: { ...input.policy.spec, driver } },
      nodes: input.nodes.filter((n) => nodes.has(("metadata" in n ? n.metadata.name : n.name) ?? "")),
    });
    daemonSets.push(...rendered.daemonSets);
    pools.push(...rendered.pools);
  }
  return { daemonSets, pools };
}

/**
 * The pools nodes are moved into: the rendered ones whose image exists, less the nodes sent
 * elsewhere (fallback or none), and emptied pools dropped, then the fallback pools.
 */
export function poolsWithFallback(rendered: readonly Pool[], missing: { has(pool: string): boolean }, diverted: ReadonlySet<string>, fallbackPools: readonly Pool[]): Pool[] {
  const kept = rendered
    .filter((p) => !missing.has(p.name))
    // A pool none of whose nodes is diverted stays the same object: a pass sees by identity that it did not change.
    .map((p) => (diverted.size === 0 || !p.nodes.some((n) => diverted.has(n)) ? p : { ...p, nodes: p.nodes.filter((n) => !diverted.has(n)) }))
    .filter((p) => p.nodes.length > 0);
  return [...kept, ...fallbackPools];
}

const list = (names: readonly string[], max = 10) => (names.length > max ? `${names.slice(0, max).join(", ")} and ${names.length - max} more` : names.join(", "));

/**
 * One sentence per kind of outcome for the policy's conditions and Events. `keeping` holds the
 * nodes on "none" whose current driver pod is still Ready on a DaemonSet that still selects
 * them: only those keep a driver. Every other node on "none" has no driver, and is named so.
 */
export function describeDriverPlans(plans: readonly NodeDriverPlan[], keeping: ReadonlySet<string>): { fallback: string; noDriver: string; keeping: string } {
  const group = (ps: readonly NodeDriverPlan[], text: (p: NodeDriverPlan) => string) => {
    const by = new Map<string, string[]>();
    for (const p of ps) by.set(text(p), [...(by.get(text(p)) ?? []), p.node]);
    return [...by].map(([t, nodes]) => `${list(nodes.sort())}: ${t}`).join("; ");
  };
  const fallback = plans.filter((p) => p.mode === "fallback");
  const none = plans.filter((p) => p.mode === "none");
  return {
    fallback: group(fallback, (p) => (p.mode === "fallback" ? `conventional driver ${p.image} (fallback: ${p.reason})` : "")),
    noDriver: group(none.filter((p) => !keeping.has(p.node)), (p) => (p.mode === "none" ? `no driver (${p.reason})` : "")),
    keeping: group(none.filter((p) => keeping.has(p.node)), (p) => (p.mode === "none" ? `keeps the driver it runs now (${p.reason})` : "")),
  };
}

// ---- gpuop preflight ----

/**
 * `--kernel` values: a bare release applies to every OS, `<os-tag>=<release>` to one OS.
 * Returns the release per OS tag, with "*" for the bare one.
 */
export function parseKernelFlags(values: readonly string[]): Map<string, string> {
  if (values.length === 0) throw new UserError("give the kernel to check with --kernel <release> (uname -r after the upgrade), or --kernel <os-tag>=<release> per OS, like --kernel ubuntu22.04=5.15.0-91-generic");
  const out = new Map<string, string>();
  for (const v of values) {
    const eq = v.indexOf("=");
    const os = eq < 0 ? "*" : v.slice(0, eq);
    const kernel = eq < 0 ? v : v.slice(eq + 1);
    if (os !== "*") parseOsTag(os);
    try {
      parseKernel(kernel);
    } catch (err) {
      if (err instanceof UserError) throw new UserError(`--kernel ${v}: ${err.message}`);
      throw err;
    }
    if (out.has(os)) throw new UserError(`--kernel is given twice for ${os === "*" ? "every OS" : os}: give one release per OS tag`);
    out.set(os, kernel);
  }
  return out;
}

/** What one GPU node would get after booting the kernel. */
export interface PreflightRow {
  node: string;
  osTag: string;
  arch: string;
  kernel: string;
  /** The kernel is the one it runs now: no --kernel was given for its OS. */
  unchanged: boolean;
  result: "precompiled" | "fallback" | "none";
  image: string;
  reason: string;
}

export function preflightRow(target: { node: string; osTag: string; arch: string; kernel: string; unchanged: boolean }, plan: NodeDriverPlan): PreflightRow {
  const image = plan.mode === "none" ? "" : plan.image;
  const result = plan.mode;
  const reason = plan.mode === "precompiled" ? "" : plan.reason;
  return { ...target, result, image, reason };
}

/** 1 when a node would have no driver; else 2 when some node could not be judged; else 0. */
export function preflightExitCode(rows: readonly PreflightRow[], problems: number): number {
  if (rows.some((r) => r.result === "none")) return 1;
  return problems > 0 ? 2 : 0;
}
