import { UserError } from "./errors.ts";
import { kernelBaseFlavor, parseKernel } from "./kernel.ts";
import { parseOsTag } from "./os.ts";
import { checkDriverBranch } from "./tag.ts";

/** Where NVIDIA publishes its driver images (ClusterPolicy `driver.repository` default). */
export const NVIDIA_DRIVER_REPOSITORY = "nvcr.io/nvidia";
/** ClusterPolicy `driver.image` default. */
export const NVIDIA_DRIVER_IMAGE = "driver";

/** Architectures as `kubernetes.io/arch` names them. */
export type Arch = "amd64" | "arm64" | (string & {});

/** One set of combinations NVIDIA publishes precompiled images for: every os × arch × flavor × branch. */
export interface SupportRow {
  osTags: readonly string[];
  arches: readonly Arch[];
  /** Kernel flavors without the `-64k` page-size variant (see kernelBaseFlavor). */
  flavors: readonly string[];
  branches: readonly string[];
  /** Where the row's facts come from. */
  source: string;
}

const TODAY_FLAVORS = ["generic", "aws", "azure", "azure-fde", "nvidia", "oracle"];

/**
 * What NVIDIA publishes, as data. It is advisory: whether a tag exists is the registry's answer,
 * and `gpuop precompiled check` asks it too. Extend this table, not the code, when NVIDIA does.
 */
export const PRECOMPILED_SUPPORT: readonly SupportRow[] = [
  {
    osTags: ["ubuntu22.04"],
    arches: ["amd64"],
    flavors: ["generic"],
    branches: ["525"],
    source: "NVIDIA's precompiled-drivers doc, Limitations: Ubuntu 22.04, x86_64, LTSB branch 525, generic kernels",
  },
  {
    osTags: ["ubuntu22.04"],
    arches: ["amd64", "arm64"],
    flavors: TODAY_FLAVORS,
    branches: ["535", "550", "570", "580"],
    source:
      "nvcr.io/nvidia/driver tags such as 535-5.15.0-118-generic-ubuntu22.04, 580-5.15.0-1103-aws-ubuntu22.04, " +
      "535-6.8.0-1050-aws-ubuntu22.04; flavors and arm64 from NVIDIA's published set; 550 and 570 are current branches",
  },
  {
    osTags: ["ubuntu24.04"],
    arches: ["amd64", "arm64"],
    flavors: TODAY_FLAVORS,
    // No 535 or 525 tag is known for 24.04 (its kernels postdate them in NVIDIA's pipeline).
    branches: ["550", "570", "580"],
    source:
      "nvcr.io/nvidia/driver tags such as 580-6.8.0-1047-oracle-ubuntu24.04, 580-6.8.0-1046-azure-fde-ubuntu24.04; " +
      "ubuntu24.04/precompiled build context",
  },
];

/** Features a precompiled driver container cannot provide (NVIDIA's doc; GDRCopy per NVIDIA's operator). */
export const PRECOMPILED_INCOMPATIBLE = [
  { feature: "vgpu", name: "NVIDIA vGPU", source: "precompiled-drivers doc: no vGPU" },
  { feature: "gds", name: "GPUDirect Storage (GDS)", source: "precompiled-drivers doc: no GDS" },
  { feature: "gdrcopy", name: "GDRCopy", source: "NVIDIA's operator refuses GDRCopy with precompiled drivers" },
] as const;

export type IncompatibleFeature = (typeof PRECOMPILED_INCOMPATIBLE)[number]["feature"];

/** One message per enabled feature that precompiled drivers cannot serve. */
export function precompiledIncompatibilities(enabled: Partial<Record<IncompatibleFeature, boolean>>): string[] {
  return PRECOMPILED_INCOMPATIBLE.filter((f) => enabled[f.feature] === true).map(
    (f) => `${f.name} does not work with precompiled driver containers: turn it off or set driver.usePrecompiled=false`,
  );
}

export interface SupportQuery {
  /** `driver.repository`; "" means NVIDIA's. */
  repository: string;
  branch: string;
  /** Kernel release (`uname -r`). */
  kernel: string;
  osTag: string;
  /** `kubernetes.io/arch`; `x86_64` and `aarch64` are accepted too. */
  arch: string;
}

export interface SupportResult {
  supported: boolean;
  /** What is unsupported and what to do; empty when supported. */
  reasons: string[];
}

const BUILD_YOUR_OWN =
  "build one with `gpuop precompiled build` and set driver.repository, or use conventional drivers (driver.usePrecompiled=false)";

/** `x86_64` -> `amd64`, `aarch64` -> `arm64`; other names lower-cased. */
export function normalizeArch(arch: string): Arch {
  const a = arch.trim().toLowerCase();
  if (a === "") throw new UserError("architecture is empty: give it as kubernetes.io/arch does, amd64 or arm64");
  if (a === "x86_64") return "amd64";
  if (a === "aarch64") return "arm64";
  return a;
}

/** NVIDIA's repository (`nvcr.io/nvidia`, also given as `nvcr.io/nvidia/driver`), or "" for the default. */
export function isNvidiaRepository(repository: string): boolean {
  const r = repository.trim().replace(/\/+$/, "").toLowerCase();
  return r === "" || r === NVIDIA_DRIVER_REPOSITORY || r === `${NVIDIA_DRIVER_REPOSITORY}/${NVIDIA_DRIVER_IMAGE}`;
}

/**
 * Whether NVIDIA publishes a precompiled image for this branch, kernel, OS tag and architecture.
 * In a custom repository any kernel variant may exist, so there the answer is always yes: only
 * the tag's existence (checked against the registry) decides. Malformed input throws a UserError.
 * `table` is for tests; callers use NVIDIA's.
 */
export function checkPrecompiledSupport(
  q: SupportQuery,
  table: readonly SupportRow[] = PRECOMPILED_SUPPORT,
): SupportResult {
  checkDriverBranch(q.branch);
  const kernel = parseKernel(q.kernel);
  parseOsTag(q.osTag);
  const arch = normalizeArch(q.arch);
  if (!isNvidiaRepository(q.repository)) return { supported: true, reasons: [] };

  const flavor = kernelBaseFlavor(kernel);
  const flavorText = flavor === "" ? `kernel ${q.kernel} (no flavor)` : `kernel flavor '${flavor}'`;
  const reasons: string[] = [];
  const values = (pick: (row: SupportRow) => readonly string[]) => [...new Set(table.flatMap(pick))];
  const dimensions: [string, string, (row: SupportRow) => readonly string[]][] = [
    [q.osTag, `OS '${q.osTag}'`, (r) => r.osTags],
    [arch, `architecture '${arch}'`, (r) => r.arches],
    [flavor, flavorText, (r) => r.flavors],
  ];
  for (const [value, text, pick] of dimensions) {
    const known = values(pick);
    if (!known.includes(value)) {
      reasons.push(`NVIDIA publishes no precompiled images for ${text} (only ${known.join(", ")}); ${BUILD_YOUR_OWN}`);
    }
  }
  const branches = values((r) => r.branches);
  if (!branches.includes(q.branch)) {
    reasons.push(
      `NVIDIA publishes no precompiled images for driver branch ${q.branch} (only ${branches.join(", ")}); set driver.version to one of those`,
    );
  }
  if (reasons.length > 0) return { supported: false, reasons };

  // Every value is published somewhere; is this combination?
  const rows = table.filter(
    (r) => r.osTags.includes(q.osTag) && r.arches.includes(arch) && r.flavors.includes(flavor),
  );
  if (rows.some((r) => r.branches.includes(q.branch))) return { supported: true, reasons: [] };
  const combo = `${q.osTag}, ${arch} and ${flavorText}`;
  const alternatives = [...new Set(rows.flatMap((r) => r.branches))];
  reasons.push(
    alternatives.length > 0
      ? `NVIDIA publishes precompiled images for ${combo} only for driver branches ${alternatives.join(", ")}, not ${q.branch}; set driver.version to one of those or ${BUILD_YOUR_OWN}`
      : `NVIDIA publishes no precompiled images for ${combo}; ${BUILD_YOUR_OWN}`,
  );
  return { supported: false, reasons };
}
