import { UserError } from "./errors.ts";

/**
 * A Linux kernel release as `uname -r` (and NFD's `kernel-version.full` label) prints it.
 *
 * Two packaging conventions matter for driver images:
 * - Debian/Ubuntu (and SLES): `5.15.0-69-generic`, `6.8.0-1049-nvidia-64k`,
 *   `5.14.21-150500.55.19-default`: ABI and flavor joined by `-`.
 * - RPM distributions (RHEL, Rocky, Oracle Linux, Fedora, Amazon Linux):
 *   `5.14.0-687.39.1.el9_8.x86_64`, `5.14.0-427.13.1.el9_4.aarch64+64k`: the ABI (release
 *   number), the distribution tag as flavor, an optional architecture and `+variant`, joined by `.`.
 * Custom kernels such as `6.6.1` or `6.6.1-arch1-1` have no ABI; their local version is the flavor.
 */
export interface Kernel {
  release: string;
  major: number;
  minor: number;
  patch: number;
  /** Distribution ABI / package release: `69`, `1049`, `687.39.1`; "" when none. */
  abi: string;
  /** `generic`, `azure-fde`, `nvidia-64k`; for RPM kernels the dist tag (`el9_8`); "" when none. */
  flavor: string;
  /** RPM kernels only: the architecture suffix (`x86_64`, `aarch64`). */
  arch?: string;
  /** RPM kernels only: the variant after `+` (`debug`, `64k`, `rt`). */
  variant?: string;
  /** `rpm` when ABI and flavor are joined by `.`; absent for the Debian convention. */
  style?: "rpm";
}

/** `uname -r` comes from a 65-byte field (64 characters and a NUL). */
export const KERNEL_RELEASE_MAX_LENGTH = 64;

/** Architecture suffixes RPM kernels carry; NVIDIA drops them from object names. */
export const RPM_KERNEL_ARCHES = ["x86_64", "aarch64", "ppc64le", "s390x", "i686"] as const;

const EXAMPLES = "like 5.15.0-69-generic or 5.14.0-687.39.1.el9_8.x86_64";
const VERSION = /^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$/;
const ABI = "[0-9]+(?:\\.[0-9]+)*";
const DEB_FLAVOR = "[a-z0-9]+(?:-[a-z0-9]+)*";
const DEB_SUFFIX = new RegExp(`^(${ABI})(?:-(${DEB_FLAVOR}))?$`);
const RPM_SUFFIX = new RegExp(
  `^(${ABI})\\.([a-z][a-z0-9_]*)(?:\\.(${RPM_KERNEL_ARCHES.join("|")}))?(?:\\+([a-z0-9_]+))?$`,
);
const LOCAL_SUFFIX = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;

/** Parses a kernel release; throws a UserError naming the part that does not fit. */
export function parseKernel(release: string): Kernel {
  if (release === "") {
    throw new UserError(`kernel release is empty: give the node's \`uname -r\`, ${EXAMPLES}`);
  }
  if (release.length > KERNEL_RELEASE_MAX_LENGTH) {
    throw new UserError(
      `kernel release "${release}" is ${release.length} characters long; \`uname -r\` is at most ${KERNEL_RELEASE_MAX_LENGTH}`,
    );
  }
  const dash = release.indexOf("-");
  const version = dash < 0 ? release : release.slice(0, dash);
  const suffix = dash < 0 ? undefined : release.slice(dash + 1);
  const v = VERSION.exec(version);
  if (!v) {
    throw new UserError(
      `kernel release "${release}": version "${version}" is not MAJOR.MINOR.PATCH (numbers without leading zeros), ${EXAMPLES}`,
    );
  }
  const base = { release, major: Number(v[1]), minor: Number(v[2]), patch: Number(v[3]) };
  if (suffix === undefined) return { ...base, abi: "", flavor: "" };

  const deb = DEB_SUFFIX.exec(suffix);
  if (deb) return { ...base, abi: deb[1] ?? "", flavor: deb[2] ?? "" };
  const rpm = RPM_SUFFIX.exec(suffix);
  if (rpm) {
    const k: Kernel = { ...base, abi: rpm[1] ?? "", flavor: rpm[2] ?? "", style: "rpm" };
    if (rpm[3] !== undefined) k.arch = rpm[3];
    if (rpm[4] !== undefined) k.variant = rpm[4];
    return k;
  }
  if (LOCAL_SUFFIX.test(suffix)) return { ...base, abi: "", flavor: suffix };
  throw new UserError(
    `kernel release "${release}": suffix "${suffix}" is neither ABI-flavor (69-generic) nor ABI.dist[.arch] (687.39.1.el9_8.x86_64) nor a lower-case local version (arch1-1)`,
  );
}

/** True when `parseKernel` accepts the string. */
export function isKernelRelease(release: string): boolean {
  try {
    parseKernel(release);
    return true;
  } catch {
    return false;
  }
}

/** Builds the release string from the parts; `formatKernel(parseKernel(s)) === s`. */
export function formatKernel(k: Kernel): string {
  const version = `${k.major}.${k.minor}.${k.patch}`;
  if (k.style === "rpm") {
    return `${version}-${k.abi}.${k.flavor}${k.arch ? `.${k.arch}` : ""}${k.variant ? `+${k.variant}` : ""}`;
  }
  return [version, k.abi, k.flavor].filter((p) => p !== "").join("-");
}

/**
 * Orders kernels oldest first (for `sort`; reverse for newest first): numerically by version,
 * then by ABI parts (`1049` > `118`, `687.39.1` > `687.4.2`), then by flavor, arch, variant and
 * release text so the order is total and deterministic.
 */
export function compareKernels(a: Kernel, b: Kernel): number {
  const byNumber = a.major - b.major || a.minor - b.minor || a.patch - b.patch || compareAbi(a.abi, b.abi);
  if (byNumber !== 0) return Math.sign(byNumber);
  return (
    compareText(a.flavor, b.flavor) ||
    compareText(a.arch ?? "", b.arch ?? "") ||
    compareText(a.variant ?? "", b.variant ?? "") ||
    compareText(a.release, b.release)
  );
}

/** Compares two kernel release strings; see `compareKernels`. */
export function compareKernelReleases(a: string, b: string): number {
  return compareKernels(parseKernel(a), parseKernel(b));
}

function compareAbi(a: string, b: string): number {
  const pa = a === "" ? [] : a.split(".").map(Number);
  const pb = b === "" ? [] : b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    // A missing part sorts before any number: 687.39 < 687.39.1.
    const x = pa[i] ?? -1;
    const y = pb[i] ?? -1;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The flavor without its page-size variant: Ubuntu's arm64 `-64k` kernels (`nvidia-64k`,
 * `generic-64k`) are builds of the same flavor. Other dashes belong to the flavor (`azure-fde`).
 */
export function kernelBaseFlavor(k: Kernel): string {
  if (k.style === "rpm") return k.flavor;
  return k.flavor.endsWith("-64k") ? k.flavor.slice(0, -"-64k".length) : k.flavor;
}
