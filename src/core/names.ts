import { createHash } from "node:crypto";
import { UserError } from "./errors.ts";
import { RPM_KERNEL_ARCHES } from "./kernel.ts";
import { isOsTag } from "./os.ts";

/** RFC 1123 label: what Kubernetes requires of namespaces, Service names, label name parts. */
export const DNS_LABEL_MAX_LENGTH = 63;
/** RFC 1123 subdomain: what Kubernetes requires of most object names (DaemonSets included). */
export const DNS_SUBDOMAIN_MAX_LENGTH = 253;
/**
 * gpuop keeps driver DaemonSet names within 63 characters although a subdomain may be longer:
 * the name is also used as a label value, and pod names derived from it stay readable.
 */
export const OBJECT_NAME_MAX_LENGTH = 63;

/** NVIDIA's name in conventional mode, kept for compatibility (one DaemonSet for the cluster). */
export const LEGACY_DRIVER_DAEMONSET_NAME = "nvidia-driver-daemonset";
export const DRIVER_DAEMONSET_PREFIX = `${LEGACY_DRIVER_DAEMONSET_NAME}-`;

const DNS_LABEL = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
// A name whose parts are joined by single '.' or '-': it never contains "--", which marks a hash.
const PLAIN_NAME = /^[a-z0-9]+(?:[.-][a-z0-9]+)*$/;
/** Separates a name's readable part from its hash; never part of a name that is not shortened. */
const HASH_MARK = "--";
const HASH_LENGTH = 10;

export function isDnsLabel(s: string): boolean {
  return s.length <= DNS_LABEL_MAX_LENGTH && DNS_LABEL.test(s);
}

export function isDnsSubdomain(s: string): boolean {
  return s.length <= DNS_SUBDOMAIN_MAX_LENGTH && s.split(".").every((part) => DNS_LABEL.test(part));
}

/** A valid Kubernetes label value (may be empty). */
export function isLabelValue(s: string): boolean {
  return s.length <= 63 && LABEL_VALUE.test(s);
}

/** First hex digits of SHA-256: stable across releases and machines. */
export function shortHash(input: string, length = HASH_LENGTH): string {
  return createHash("sha256").update(input).digest("hex").slice(0, length);
}

const ARCH_SUFFIX = new RegExp(`\\.(?:${RPM_KERNEL_ARCHES.join("|")})(?=$|\\+)`);

/**
 * The kernel as NVIDIA writes it into DaemonSet names: architecture suffix dropped
 * (`.x86_64`, `.aarch64`), `_` -> `.`, lower case; here also any other character a DNS
 * subdomain refuses -> `-`, and separators tidied so every dot-separated part is a label.
 */
export function sanitizeKernelForName(kernel: string): string {
  return kernel
    .replace(ARCH_SUFFIX, "")
    .replaceAll("_", ".")
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, "-")
    .replace(/[.-]*\.[.-]*/g, ".")
    .replace(/-+/g, "-")
    .replace(/^[.-]+|[.-]+$/g, "");
}

/** Conventional mode: `nvidia-driver-daemonset-<os-tag>`, one per OS tag. */
export function conventionalDaemonSetName(osTag: string): string {
  checkOsTag(osTag);
  return fitName(DRIVER_DAEMONSET_PREFIX + osTag, "", osTag, `conventional\0${osTag}`);
}

/**
 * Precompiled mode: `nvidia-driver-daemonset-<kernel>-<os-tag>`, one per kernel and OS tag
 * (`nvidia-driver-daemonset-5.15.0-69-generic-ubuntu22.04`, NVIDIA's form). When sanitizing
 * loses information (an RPM kernel's arch or `_`) or the name exceeds 63 characters, the kernel
 * is shortened and `--<hash of kernel and OS tag>` appended, so distinct inputs never share a
 * name: the same RHEL kernel on x86_64 and aarch64 nodes gets two DaemonSets.
 */
export function precompiledDaemonSetName(kernel: string, osTag: string): string {
  if (kernel === "") throw new UserError("kernel is empty: a precompiled driver DaemonSet is named after its kernel");
  checkOsTag(osTag);
  const sanitized = sanitizeKernelForName(kernel);
  const exact = sanitized === kernel && PLAIN_NAME.test(kernel);
  const readable = sanitized === "" ? osTag : `${sanitized}-${osTag}`;
  const hashInput = `precompiled\0${kernel}\0${osTag}`;
  return exact
    ? fitName(DRIVER_DAEMONSET_PREFIX + readable, sanitized, osTag, hashInput)
    : hashedName(sanitized, osTag, hashInput);
}

/** The driver DaemonSet for a pool: per OS tag, and per kernel too in precompiled mode. */
export function driverDaemonSetName(osTag: string, kernel?: string): string {
  return kernel === undefined ? conventionalDaemonSetName(osTag) : precompiledDaemonSetName(kernel, osTag);
}

function fitName(name: string, kernelPart: string, osTag: string, hashInput: string): string {
  return name.length <= OBJECT_NAME_MAX_LENGTH ? name : hashedName(kernelPart, osTag, hashInput);
}

/** `<prefix><kernel, shortened>-<os-tag>--<hash>` within 63 characters; the OS tag kept whole when it fits. */
function hashedName(kernelPart: string, osTag: string, hashInput: string): string {
  const suffix = HASH_MARK + shortHash(hashInput);
  const room = OBJECT_NAME_MAX_LENGTH - DRIVER_DAEMONSET_PREFIX.length - suffix.length;
  const kernelRoom = room - osTag.length - 1;
  let readable: string;
  if (kernelPart === "") readable = osTag.slice(0, room);
  else if (kernelRoom >= 1) readable = `${trimEnd(kernelPart.slice(0, kernelRoom))}-${osTag}`;
  else readable = `${kernelPart}-${osTag}`.slice(0, room);
  readable = trimEnd(readable.replace(/^-/, ""));
  return DRIVER_DAEMONSET_PREFIX + readable + suffix;
}

function trimEnd(s: string): string {
  return s.replace(/[.-]+$/, "");
}

function checkOsTag(osTag: string): void {
  if (!isOsTag(osTag)) {
    throw new UserError(`OS tag "${osTag}" is not like ubuntu22.04 or rhel9, so no DaemonSet name can be derived from it`);
  }
}
