import { test } from "node:test";
import assert from "node:assert/strict";
import { indexPlatforms, manifestMediaType, MediaType, normalizeArch, formatPlatform } from "./manifest.ts";

test("index platforms skip attestations and repeats, normalise arch names", () => {
  const platforms = indexPlatforms({
    manifests: [
      { digest: "sha256:a", platform: { os: "linux", architecture: "amd64" } },
      { digest: "sha256:b", platform: { os: "linux", architecture: "arm64", variant: "v8" } },
      { digest: "sha256:c", platform: { os: "unknown", architecture: "unknown" } },
      { digest: "sha256:d", platform: { os: "linux", architecture: "x86_64" } },
      { digest: "sha256:e" },
    ],
  });
  assert.deepEqual(platforms, [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64", variant: "v8" }]);
  assert.equal(formatPlatform(platforms[1]!), "linux/arm64/v8");
});

test("arch spellings", () => {
  assert.equal(normalizeArch("x86_64"), "amd64");
  assert.equal(normalizeArch("aarch64"), "arm64");
  assert.equal(normalizeArch("ppc64le"), "ppc64le");
});

test("media type from header, body, or shape", () => {
  assert.equal(manifestMediaType(`${MediaType.dockerList}; charset=utf-8`, {}), MediaType.dockerList);
  assert.equal(manifestMediaType("application/json", { mediaType: MediaType.dockerManifest }), MediaType.dockerManifest);
  assert.equal(manifestMediaType(undefined, { manifests: [] }), MediaType.ociIndex);
  assert.equal(manifestMediaType(undefined, { layers: [] }), MediaType.ociManifest);
});
