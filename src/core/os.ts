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

/**
 * os-release names of the distributions NVIDIA builds driver images for, by the PRETTY_NAME
 * prefix the kubelet reports as `status.nodeInfo.osImage` ("Ubuntu 22.04.4 LTS"). RHCOS is left
 * out on purpose: its images are tagged by OpenShift release, which osImage does not carry.
 */
const OS_IMAGE_NAMES: readonly { prefix: RegExp; id: string }[] = [
  { prefix: /^Ubuntu\s+/i, id: "ubuntu" },
  { prefix: /^Red Hat Enterprise Linux\s+(?!CoreOS)(?:Server\s+)?/i, id: "rhel" },
  { prefix: /^Rocky Linux\s+/i, id: "rocky" },
  { prefix: /^Oracle Linux Server\s+/i, id: "ol" },
  { prefix: /^Debian GNU\/Linux\s+/i, id: "debian" },
];

/**
 * The os-release of a node from the kubelet's `nodeInfo.osImage`, for nodes without Node Feature
 * Discovery's labels: "Ubuntu 22.04.4 LTS" -> ubuntu / 22.04 (Ubuntu's point release is not part
 * of VERSION_ID), "Red Hat Enterprise Linux 9.4 (Plow)" -> rhel / 9.4, "Debian GNU/Linux 12
 * (bookworm)" -> debian / 12. Throws a UserError naming the value when it is not one of these.
 */
export function osReleaseFromOsImage(osImage: string): OsRelease {
  for (const { prefix, id } of OS_IMAGE_NAMES) {
    const m = prefix.exec(osImage);
    if (!m) continue;
    const version = /^([0-9]+(?:\.[0-9]+)*)/.exec(osImage.slice(m[0].length))?.[1];
    if (!version) break;
    const parts = version.split(".");
    // Ubuntu's VERSION_ID is YY.MM; "22.04.4" is a point release of it.
    const versionId = id === "ubuntu" ? parts.slice(0, 2).join(".") : MAJOR_VERSION_ONLY_OS_IDS.includes(id) ? parts[0] ?? "" : version;
    return { id, versionId };
  }
  throw new UserError(
    `the node's OS "${osImage}" (status.nodeInfo.osImage) is not one gpuop can tell a driver image for (Ubuntu, RHEL, Rocky, Oracle Linux, Debian): deploy Node Feature Discovery or set the labels ${NFD_OS_ID_LABEL} and ${NFD_OS_VERSION_ID_LABEL} by hand`,
  );
}
