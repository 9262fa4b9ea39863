import { UserError } from "./errors.ts";

/** The two os-release fields an OS tag is made of. */
export interface OsRelease {
  /** os-release `ID`: `ubuntu`, `rhel`, `rocky`, `ol`. */
  id: string;
  /** os-release `VERSION_ID`, as used in the tag: `22.04`, `9`. */
  versionId: string;
}

export const NFD_OS_ID_LABEL = "feature.node.kubernetes.io/system-os_release.ID";
export const NFD_OS_VERSION_ID_LABEL = "feature.node.kubernetes.io/system-os_release.VERSION_ID";

/**
 * Distributions whose driver images are tagged by major version only (`rhel9`, not `rhel9.4`),
 * as NVIDIA's operator does: their minor releases share one kernel ABI line.
 */
export const MAJOR_VERSION_ONLY_OS_IDS: readonly string[] = ["rhel", "rocky", "ol"];

// An OS tag has no dash, so it is always the last dash-separated field of an image tag.
const ID = /^[a-z]+$/;
const VERSION_ID = /^[0-9]+(?:\.[0-9]+)*$/;
const OS_TAG = /^([a-z]+)([0-9]+(?:\.[0-9]+)*)$/;

/** `ubuntu22.04`, `rhel9`: letters, then a dotted version. */
export function isOsTag(tag: string): boolean {
  return OS_TAG.test(tag);
}

export function parseOsTag(tag: string): OsRelease {
  const m = OS_TAG.exec(tag);
  if (!m) {
    throw new UserError(
      `OS tag "${tag}" is not an os-release ID followed by its VERSION_ID, like ubuntu22.04, ubuntu24.04 or rhel9`,
    );
  }
  return { id: m[1] ?? "", versionId: m[2] ?? "" };
}

export function formatOsTag(os: OsRelease): string {
  if (!ID.test(os.id)) {
    throw new UserError(`OS ID "${os.id}" cannot form an OS tag: only lower-case letters are allowed (ubuntu, rhel)`);
  }
  if (!VERSION_ID.test(os.versionId)) {
    throw new UserError(`OS VERSION_ID "${os.versionId}" for "${os.id}" is not a dotted number like 22.04 or 9`);
  }
  return os.id + os.versionId;
}

/**
 * The OS tag of a node from its Node Feature Discovery labels: `ubuntu` + `22.04` -> `ubuntu22.04`;
 * RHEL, Rocky and Oracle Linux keep only the major version (`9.4` -> `rhel9`).
 */
export function osTagFromLabels(labels: Readonly<Record<string, string>>): string {
  return formatOsTag(osReleaseFromLabels(labels));
}

export function osReleaseFromLabels(labels: Readonly<Record<string, string>>): OsRelease {
  const id = labels[NFD_OS_ID_LABEL];
  const versionId = labels[NFD_OS_VERSION_ID_LABEL];
  for (const [label, value] of [
    [NFD_OS_ID_LABEL, id],
    [NFD_OS_VERSION_ID_LABEL, versionId],
  ] as const) {
    if (value === undefined || value === "") {
      throw new UserError(
        `node label ${label} is missing: deploy Node Feature Discovery (or label the node by hand) so the OS tag can be derived`,
      );
    }
  }
  const os = { id: (id ?? "").toLowerCase(), versionId: versionId ?? "" };
  if (MAJOR_VERSION_ONLY_OS_IDS.includes(os.id)) os.versionId = os.versionId.split(".")[0] ?? "";
  // Validate here so the message names the label rather than a derived tag.
  formatOsTagOrExplain(os, id ?? "", versionId ?? "");
  return os;
}

function formatOsTagOrExplain(os: OsRelease, rawId: string, rawVersionId: string): void {
  if (!ID.test(os.id)) {
    throw new UserError(
      `node label ${NFD_OS_ID_LABEL}="${rawId}" cannot form an OS tag: only letters are allowed (ubuntu, rhel)`,
    );
  }
  if (!VERSION_ID.test(os.versionId)) {
    throw new UserError(
      `node label ${NFD_OS_VERSION_ID_LABEL}="${rawVersionId}" is not a dotted number like 22.04 or 9`,
    );
  }
}
