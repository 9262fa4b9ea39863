import { UserError } from "./errors.ts";
import { TAG_MAX_LENGTH, TAG_PATTERN } from "./tag.ts";

/** A container image reference, always with its registry (Docker's defaults applied). */
export interface ImageRef {
  /** Host and optional port: `nvcr.io`, `docker.io`, `localhost:5000`. */
  registry: string;
  /** Path inside the registry: `nvidia/driver`, `library/ubuntu`. */
  repository: string;
  tag?: string;
  /** `sha256:<64 hex>`. */
  digest?: string;
}

export const DOCKER_HUB = "docker.io";
/** Docker's names for its own registry; all mean `docker.io`. */
const DOCKER_HUB_ALIASES = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);
/** distribution/reference limits the full name (registry and repository) to 255 characters. */
export const NAME_MAX_LENGTH = 255;

const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const REGISTRY = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?$`);
// Lower-case alphanumerics joined by one '.', one or two '_', or any number of '-'.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DIGESTS: Record<string, RegExp> = { sha256: /^[a-f0-9]{64}$/, sha512: /^[a-f0-9]{128}$/ };

/**
 * Parses an image reference with Docker's rules: the first path component is a registry when it
 * contains `.` or `:` or is `localhost`; otherwise the registry is docker.io, where a single-name
 * repository lives under `library/`. Throws a UserError naming the bad part.
 */
export function parseImageRef(ref: string): ImageRef {
  if (ref === "") throw new UserError("image reference is empty: give one like nvcr.io/nvidia/driver:550.54.15-ubuntu24.04");
  const where = `image reference "${ref}"`;

  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    checkDigest(digest, where);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    checkTag(tag, where);
  }

  const slash = rest.indexOf("/");
  const first = slash < 0 ? "" : rest.slice(0, slash);
  const hasRegistry = slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost");
  let registry = hasRegistry ? first : DOCKER_HUB;
  let repository = hasRegistry ? rest.slice(slash + 1) : rest;
  if (hasRegistry) checkRegistry(registry, where);
  if (DOCKER_HUB_ALIASES.has(registry)) registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && repository !== "" && !repository.includes("/")) repository = `library/${repository}`;
  checkRepository(repository, where);
  if (registry.length + 1 + repository.length > NAME_MAX_LENGTH) {
    throw new UserError(`${where}: the name is longer than ${NAME_MAX_LENGTH} characters`);
  }

  const image: ImageRef = { registry, repository };
  if (tag !== undefined) image.tag = tag;
  if (digest !== undefined) image.digest = digest;
  return image;
}

/** The full, normalized form: `docker.io/library/ubuntu:24.04`; `parseImageRef(formatImageRef(x))` equals x. */
export function formatImageRef(image: ImageRef): string {
  const where = `image ${repositoryRef(image.registry, image.repository)}`;
  checkRegistry(image.registry, where);
  checkRepository(image.repository, where);
  if (image.tag !== undefined) checkTag(image.tag, where);
  if (image.digest !== undefined) checkDigest(image.digest, where);
  return (
    repositoryRef(image.registry, image.repository) +
    (image.tag !== undefined ? `:${image.tag}` : "") +
    (image.digest !== undefined ? `@${image.digest}` : "")
  );
}

/** The short form people type: Docker Hub's `docker.io/` and `library/` left out. */
export function familiarImageRef(image: ImageRef): string {
  let name = repositoryRef(image.registry, image.repository);
  if (image.registry === DOCKER_HUB) {
    const short = image.repository.startsWith("library/") ? image.repository.slice("library/".length) : image.repository;
    // Keep `docker.io/` where the first component would otherwise be read as a registry.
    const first = short.split("/")[0] ?? "";
    if (!short.includes("/") || !(first.includes(".") || first === "localhost")) name = short;
  }
  return name + (image.tag !== undefined ? `:${image.tag}` : "") + (image.digest !== undefined ? `@${image.digest}` : "");
}

/** `nvcr.io` + `nvidia/driver` -> `nvcr.io/nvidia/driver`. */
export function repositoryRef(registry: string, repository: string): string {
  return `${registry}/${repository}`;
}

/**
 * The driver image as NVIDIA's ClusterPolicy names it: `<repository>/<image>:<version>`, or
 * `@<version>` when the version is a digest. `repository` is a registry path prefix
 * (`nvcr.io/nvidia`), not a full repository.
 */
export function driverImageRef(repository: string, image: string, version: string): ImageRef {
  const name = `${repository.replace(/\/+$/, "")}/${image}`;
  return parseImageRef(version.includes(":") ? `${name}@${version}` : `${name}:${version}`);
}

function checkRegistry(registry: string, where: string): void {
  if (!REGISTRY.test(registry)) {
    throw new UserError(
      `${where}: registry "${registry}" is not a host name with an optional port, like nvcr.io or localhost:5000`,
    );
  }
}

function checkRepository(repository: string, where: string): void {
  if (repository === "") throw new UserError(`${where}: the repository name is missing, like nvidia/driver`);
  if (repository !== repository.toLowerCase()) {
    throw new UserError(`${where}: repository "${repository}" must be lower case ("${repository.toLowerCase()}")`);
  }
  for (const component of repository.split("/")) {
    if (!PATH_COMPONENT.test(component)) {
      throw new UserError(
        `${where}: repository "${repository}" has an invalid path component "${component}": use lower-case letters and digits, joined by '.', '_', '__' or '-'`,
      );
    }
  }
}

function checkTag(tag: string, where: string): void {
  if (tag.length > TAG_MAX_LENGTH) {
    throw new UserError(`${where}: tag "${tag}" is ${tag.length} characters long; at most ${TAG_MAX_LENGTH} are allowed`);
  }
  if (!TAG_PATTERN.test(tag)) {
    throw new UserError(
      `${where}: tag "${tag}" is invalid: use letters, digits, '_', '.' and '-', not starting with '.' or '-'`,
    );
  }
}

function checkDigest(digest: string, where: string): void {
  const colon = digest.indexOf(":");
  const algorithm = colon < 0 ? "" : digest.slice(0, colon);
  const pattern = DIGESTS[algorithm];
  if (!pattern) {
    throw new UserError(`${where}: digest "${digest}" must start with sha256: or sha512:`);
  }
  if (!pattern.test(digest.slice(colon + 1))) {
    const length = algorithm === "sha256" ? 64 : 128;
    throw new UserError(`${where}: digest "${digest}" must be ${algorithm}: followed by ${length} lower-case hex digits`);
  }
}
