/** Manifest media types the client asks for and understands. */
export const MediaType = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

/** The Accept header for manifests: every form, indexes first. */
export const manifestAccept = [MediaType.ociIndex, MediaType.dockerList, MediaType.ociManifest, MediaType.dockerManifest].join(", ");

export function isIndexMediaType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerList;
}

export function isImageMediaType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest;
}

/** One platform an image runs on (OCI image-spec `platform`). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** An image's descriptor fields the client reads from a manifest body. */
export interface ManifestBody {
  schemaVersion?: number;
  mediaType?: string;
  config?: { mediaType?: string; digest: string; size?: number };
  layers?: { mediaType?: string; digest: string; size?: number }[];
  manifests?: { mediaType?: string; digest: string; size?: number; platform?: { os?: string; architecture?: string; variant?: string }; annotations?: Record<string, string> }[];
}

/**
 * Architecture names as Kubernetes' `kubernetes.io/arch` label and OCI
 * platforms spell them (`uname -m` spellings are accepted too).
 */
export function normalizeArch(arch: string): string {
  const a = arch.trim().toLowerCase();
  if (a === "x86_64" || a === "x86-64") return "amd64";
  if (a === "aarch64" || a === "arm64v8") return "arm64";
  return a;
}

/**
 * The platforms an index lists, leaving out attestation entries (BuildKit
 * writes them as `unknown/unknown`), in the index's order, without repeats.
 */
export function indexPlatforms(index: ManifestBody): Platform[] {
  const out: Platform[] = [];
  const seen = new Set<string>();
  for (const m of index.manifests ?? []) {
    const p = m.platform;
    if (!p?.os || !p.architecture || p.os === "unknown" || p.architecture === "unknown") continue;
    if (m.annotations?.["vnd.docker.reference.type"] === "attestation-manifest") continue;
    const platform: Platform = { os: p.os, architecture: normalizeArch(p.architecture) };
    if (p.variant) platform.variant = p.variant;
    const key = formatPlatform(platform);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(platform);
  }
  return out;
}

/** `linux/arm64/v8` style. */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/** The media type of a manifest: the response header, else the body's own field, else guessed from its shape. */
export function manifestMediaType(header: string | undefined, body: ManifestBody): string {
  const h = header?.split(";")[0]?.trim();
  if (h && h !== "application/json" && h !== "application/octet-stream") return h;
  if (body.mediaType) return body.mediaType;
  return body.manifests ? MediaType.ociIndex : MediaType.ociManifest;
}
