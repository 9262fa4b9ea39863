// What `gpuop precompiled list|check` decides, without I/O: which tags match
// a filter and in what order, what tag each node needs and whether the answer
// lets a kernel upgrade go ahead.
import { UserError } from "./errors.ts";
import { NFD_KERNEL_LABEL, type NodeLike } from "./gpu-node.ts";
import { compareKernelReleases, parseKernel } from "./kernel.ts";
import { parseOsTag } from "./os.ts";
import { checkPrecompiledSupport } from "./support.ts";
import { checkDriverBranch, formatPrecompiledTag, isConventionalTag, parseConventionalTag, parsePrecompiledTag, type PrecompiledTag } from "./tag.ts";

export interface CatalogFilter {
  branch?: string;
  /** OS tag: `ubuntu22.04`. */
  os?: string;
  /** A kernel release, or its leading part (`5.15.0`, `5.15.0-69`). */
  kernel?: string;
}

export interface CatalogSummary {
  /** Tags in the repository. */
  tagCount: number;
  precompiledTagCount: number;
  /** See latestTag. */
  latestTag: string | undefined;
  /** Matching precompiled tags: by branch (highest first), OS tag, then newest kernel first. */
  matches: PrecompiledTag[];
}

/** Refuses malformed filter values with the flag's name, before any request. */
export function checkCatalogFilter(f: CatalogFilter): void {
  if (f.branch !== undefined) checkDriverBranch(f.branch);
  if (f.os !== undefined) parseOsTag(f.os);
  if (f.kernel !== undefined && !/^[0-9][A-Za-z0-9._+-]*$/.test(f.kernel)) {
    throw new UserError(`--kernel "${f.kernel}" is not a kernel release or its beginning, like 5.15.0-69-generic or 5.15.0`);
  }
}

/** A kernel filter matches the release itself or a leading part ending at a '-' or '.'. */
export function kernelMatches(release: string, filter: string): boolean {
  return release === filter || release.startsWith(`${filter}-`) || release.startsWith(`${filter}.`);
}

function byNumberDesc(a: string, b: string): number {
  return Number(b) - Number(a) || (a < b ? 1 : a > b ? -1 : 0);
}

/** Highest branch first, then OS tag (newest version first), then newest kernel first. */
export function comparePrecompiledTags(a: PrecompiledTag, b: PrecompiledTag): number {
  return byNumberDesc(a.branch, b.branch) || compareOsTagsDesc(a.osTag, b.osTag) || compareKernelReleases(b.kernel, a.kernel);
}

function compareOsTagsDesc(a: string, b: string): number {
  const pa = parseOsTag(a);
  const pb = parseOsTag(b);
  if (pa.id !== pb.id) return pa.id < pb.id ? -1 : 1;
  const va = pa.versionId.split(".").map(Number);
  const vb = pb.versionId.split(".").map(Number);
  for (let i = 0; i < Math.max(va.length, vb.length); i++) {
    const d = (vb[i] ?? -1) - (va[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Summarises a repository's tags like `ngc registry image info`. The latest
 * tag is the newest precompiled tag of the highest branch; without
 * precompiled tags, the highest conventional driver version; else the last
 * tag by name. (Registries keep no dates in tag lists.)
 */
export function summarizeCatalog(tags: readonly string[], filter: CatalogFilter = {}): CatalogSummary {
  const precompiled: PrecompiledTag[] = [];
  for (const t of tags) {
    try {
      precompiled.push(parsePrecompiledTag(t));
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
    }
  }
  precompiled.sort(comparePrecompiledTags);
  let latestTag: string | undefined;
  const newestFirst = [...precompiled].sort((a, b) => byNumberDesc(a.branch, b.branch) || compareKernelReleases(b.kernel, a.kernel));
  if (newestFirst[0]) latestTag = formatPrecompiledTag(newestFirst[0]);
  else {
    const conventional = tags.filter(isConventionalTag).map(parseConventionalTag)
      .sort((a, b) => compareVersionsDesc(a.version, b.version));
    latestTag = conventional[0] ? `${conventional[0].version}-${conventional[0].osTag}` : [...tags].sort().at(-1);
  }
  const matches = precompiled.filter((t) =>
    (filter.branch === undefined || t.branch === filter.branch) &&
    (filter.os === undefined || t.osTag === filter.os) &&
    (filter.kernel === undefined || kernelMatches(t.kernel, filter.kernel)));
  return { tagCount: tags.length, precompiledTagCount: precompiled.length, latestTag, matches };
}

/** Newest full driver version first: 525.105.17 before 525.60.13. */
export function compareVersionsDesc(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pb[i] ?? -1) - (pa[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * NFD's kernel label, or the kubelet's `nodeInfo.kernelVersion` when NFD has
 * not labelled the node yet: both say `uname -r`. Returns a node to classify.
 */
export function withKernelFallback<N extends NodeLike>(node: N): { node: N; kernelFrom: "label" | "nodeInfo" | "none" } {
  const labels = node.metadata.labels ?? {};
  if (labels[NFD_KERNEL_LABEL]) return { node, kernelFrom: "label" };
  const kernel = node.status?.nodeInfo?.kernelVersion;
  if (!kernel) return { node, kernelFrom: "none" };
  return { node: { ...node, metadata: { ...node.metadata, labels: { ...labels, [NFD_KERNEL_LABEL]: kernel } } }, kernelFrom: "nodeInfo" };
}

/** One node (or a kernel given by hand) to check. */
export interface CheckTarget {
  node: string;
  kernel: string;
  osTag: string;
  arch: string;
}

export interface CheckRow extends CheckTarget {
  /** The precompiled tag the node needs. */
  tag: string;
  /** NVIDIA publishes this combination (always true for a custom repository: only the registry decides there). */
  published: boolean;
  /** The tag exists in the registry with an image for the node's architecture. */
  available: boolean;
  /** Why NVIDIA does not publish it, and what to do. */
  reasons: string[];
}

/** The tag a target needs and the support table's verdict; `available` is the registry's answer. */
export function planCheck(target: CheckTarget, branch: string, repository: string): Omit<CheckRow, "available"> {
  parseKernel(target.kernel);
  const tag = formatPrecompiledTag({ branch, kernel: target.kernel, osTag: target.osTag });
  const support = checkPrecompiledSupport({ repository, branch, kernel: target.kernel, osTag: target.osTag, arch: target.arch });
  return { ...target, tag, published: support.supported, reasons: support.reasons };
}

/**
 * Exit status for `check`: 1 when a node lacks an image (a definite answer, even if other
 * nodes could not be checked), else 2 when some node could not be checked, else 0.
 */
export function checkExitCode(rows: readonly CheckRow[], problems: number): number {
  if (rows.some((r) => !r.available)) return 1;
  return problems > 0 ? 2 : 0;
}
