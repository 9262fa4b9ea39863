import { UserError } from "./errors.ts";
import { parseKernel } from "./kernel.ts";
import { isOsTag } from "./os.ts";

/** `<branch>-<kernel>-<os-tag>`: `525-5.15.0-69-generic-ubuntu22.04`. */
export interface PrecompiledTag {
  branch: string;
  /** Kernel release as `uname -r` prints it. */
  kernel: string;
  osTag: string;
}

/** `<full driver version>-<os-tag>`: `550.54.15-ubuntu24.04`; the container compiles the modules. */
export interface ConventionalTag {
  version: string;
  osTag: string;
}

/** OCI distribution spec: a tag is `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. */
export const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
export const TAG_MAX_LENGTH = 128;

const BRANCH = /^[1-9][0-9]{2,3}$/;
const FULL_VERSION = /^[1-9][0-9]{2,3}\.[0-9]{1,3}(?:\.[0-9]{1,3})?$/;

/** A driver branch, the `driver.version` precompiled images are selected by: `525`, `580`. */
export function isDriverBranch(s: string): boolean {
  return BRANCH.test(s);
}

/** A full driver version, as conventional images are tagged: `525.105.17`, `550.54.15`. */
export function isFullDriverVersion(s: string): boolean {
  return FULL_VERSION.test(s);
}

/** The branch a full version belongs to: `525.105.17` -> `525`. */
export function driverBranchOf(version: string): string {
  if (isDriverBranch(version)) return version;
  if (!isFullDriverVersion(version)) throw badVersion(version);
  return version.slice(0, version.indexOf("."));
}

/** Refuses anything but a branch, and says what to use when a full version was given. */
export function checkDriverBranch(branch: string): void {
  if (isDriverBranch(branch)) return;
  if (isFullDriverVersion(branch)) {
    throw new UserError(
      `driver branch "${branch}" is a full driver version; precompiled images are tagged by branch: use ${driverBranchOf(branch)}`,
    );
  }
  throw new UserError(`driver branch "${branch}" is not a driver branch like 525, 535 or 580`);
}

function badVersion(version: string): UserError {
  return new UserError(`driver version "${version}" is not a full driver version like 550.54.15 or a branch like 550`);
}

function checkOsTag(osTag: string, tag: string): void {
  if (!isOsTag(osTag)) {
    throw new UserError(`tag "${tag}": OS tag "${osTag}" is not like ubuntu22.04 or rhel9`);
  }
}

function checkTagText(tag: string): void {
  if (tag.length > TAG_MAX_LENGTH) {
    throw new UserError(`tag "${tag}" is ${tag.length} characters long; registries allow at most ${TAG_MAX_LENGTH}`);
  }
  if (!TAG_PATTERN.test(tag)) {
    const bad = [...tag].find((c) => !/[A-Za-z0-9._-]/.test(c));
    throw new UserError(
      bad === undefined
        ? `tag "${tag}" must start with a letter, digit or underscore`
        : `tag "${tag}" contains "${bad}"; tags allow only letters, digits, '.', '_' and '-'`,
    );
  }
}

/**
 * Parses `<branch>-<kernel>-<os-tag>`. Kernels contain dashes, but neither the branch nor the
 * OS tag does, so the first field is the branch, the last the OS tag, and the rest the kernel.
 */
export function parsePrecompiledTag(tag: string): PrecompiledTag {
  checkTagText(tag);
  const first = tag.indexOf("-");
  const last = tag.lastIndexOf("-");
  if (first < 0 || first === last) {
    throw new UserError(
      `tag "${tag}" is not a precompiled driver tag <branch>-<kernel>-<os-tag>, like 525-5.15.0-69-generic-ubuntu22.04`,
    );
  }
  const branch = tag.slice(0, first);
  const kernel = tag.slice(first + 1, last);
  const osTag = tag.slice(last + 1);
  if (!isDriverBranch(branch)) {
    throw new UserError(
      `tag "${tag}": "${branch}" is not a driver branch like 525${isFullDriverVersion(branch) ? ` (precompiled tags use the branch, ${driverBranchOf(branch)})` : ""}`,
    );
  }
  checkOsTag(osTag, tag);
  checkKernel(kernel, tag);
  return { branch, kernel, osTag };
}

export function isPrecompiledTag(tag: string): boolean {
  return succeeds(() => parsePrecompiledTag(tag));
}

export function formatPrecompiledTag(t: PrecompiledTag): string {
  const tag = `${t.branch}-${t.kernel}-${t.osTag}`;
  checkDriverBranch(t.branch);
  checkKernel(t.kernel, tag);
  checkOsTag(t.osTag, tag);
  checkTagText(tag);
  return tag;
}

function checkKernel(kernel: string, tag: string): void {
  try {
    parseKernel(kernel);
  } catch (err) {
    if (err instanceof UserError) throw new UserError(`tag "${tag}": ${err.message}`);
    throw err;
  }
}

/** Parses `<version>-<os-tag>`: `550.54.15-ubuntu24.04`. */
export function parseConventionalTag(tag: string): ConventionalTag {
  checkTagText(tag);
  const dash = tag.indexOf("-");
  if (dash < 0 || dash !== tag.lastIndexOf("-")) {
    throw new UserError(`tag "${tag}" is not a conventional driver tag <version>-<os-tag>, like 550.54.15-ubuntu24.04`);
  }
  const version = tag.slice(0, dash);
  const osTag = tag.slice(dash + 1);
  if (!isFullDriverVersion(version)) {
    throw new UserError(`tag "${tag}": "${version}" is not a full driver version like 550.54.15`);
  }
  checkOsTag(osTag, tag);
  return { version, osTag };
}

export function isConventionalTag(tag: string): boolean {
  return succeeds(() => parseConventionalTag(tag));
}

export function formatConventionalTag(t: ConventionalTag): string {
  const tag = `${t.version}-${t.osTag}`;
  if (!isFullDriverVersion(t.version)) {
    throw new UserError(
      isDriverBranch(t.version)
        ? `driver version "${t.version}" is a branch; conventional images need a full version like 550.54.15 (pick one from the image's tags)`
        : badVersion(t.version).message,
    );
  }
  checkOsTag(t.osTag, tag);
  checkTagText(tag);
  return tag;
}

function succeeds(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}
