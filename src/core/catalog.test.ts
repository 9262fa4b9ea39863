import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { checkCatalogFilter, checkExitCode, kernelMatches, planCheck, summarizeCatalog, withKernelFallback } from "./catalog.ts";
import { formatPrecompiledTag } from "./tag.ts";
import type { NodeLike } from "./gpu-node.ts";

const tags = [
  "latest",
  "550.54.15-ubuntu22.04",
  "570.86.10-ubuntu24.04",
  "525-5.15.0-69-generic-ubuntu22.04",
  "525-5.15.0-101-generic-ubuntu22.04",
  "525-5.15.0-70-generic-ubuntu22.04",
  "535-5.15.0-118-generic-ubuntu22.04",
  "580-6.8.0-1046-azure-fde-ubuntu24.04",
  "580-6.8.0-1047-oracle-ubuntu24.04",
  "580-5.15.0-1103-aws-ubuntu22.04",
];

test("summary counts tags, picks the latest, and sorts matches by branch, OS, newest kernel", () => {
  const s = summarizeCatalog(tags);
  assert.equal(s.tagCount, 10);
  assert.equal(s.precompiledTagCount, 7);
  assert.equal(s.latestTag, "580-6.8.0-1047-oracle-ubuntu24.04");
  assert.deepEqual(s.matches.map(formatPrecompiledTag), [
    "580-6.8.0-1047-oracle-ubuntu24.04",
    "580-6.8.0-1046-azure-fde-ubuntu24.04",
    "580-5.15.0-1103-aws-ubuntu22.04",
    "535-5.15.0-118-generic-ubuntu22.04",
    "525-5.15.0-101-generic-ubuntu22.04",
    "525-5.15.0-70-generic-ubuntu22.04",
    "525-5.15.0-69-generic-ubuntu22.04",
  ]);
});

test("filters by branch, OS tag and kernel prefix", () => {
  assert.deepEqual(summarizeCatalog(tags, { branch: "525", kernel: "5.15.0-7" }).matches, []);
  assert.deepEqual(summarizeCatalog(tags, { branch: "525", kernel: "5.15.0-70" }).matches.map((t) => t.kernel), ["5.15.0-70-generic"]);
  assert.deepEqual(summarizeCatalog(tags, { os: "ubuntu24.04" }).matches.map((t) => t.branch), ["580", "580"]);
  assert.equal(summarizeCatalog(tags, { kernel: "6.8.0" }).matches.length, 2);
  assert.ok(kernelMatches("5.14.0-687.39.1.el9_8.x86_64", "5.14.0-687"));
  assert.ok(!kernelMatches("5.15.0-690-generic", "5.15.0-69"));
});

test("latest tag without precompiled tags: highest conventional version, else last by name", () => {
  assert.equal(summarizeCatalog(["550.54.15-ubuntu22.04", "570.86.10-ubuntu24.04", "550.127.05-ubuntu22.04"]).latestTag, "570.86.10-ubuntu24.04");
  assert.equal(summarizeCatalog(["a", "c", "b"]).latestTag, "c");
  assert.equal(summarizeCatalog([]).latestTag, undefined);
});

test("matches are always sorted and a subset of the tags (property)", () => {
  const tagArb = fc.tuple(fc.constantFrom("525", "535", "580"), fc.integer({ min: 1, max: 2000 }), fc.constantFrom("generic", "aws", "azure-fde"), fc.constantFrom("ubuntu22.04", "ubuntu24.04"))
    .map(([b, abi, f, os]) => `${b}-5.15.0-${abi}-${f}-${os}`);
  fc.assert(fc.property(fc.array(tagArb, { maxLength: 40 }), (list) => {
    const m = summarizeCatalog(list).matches.map(formatPrecompiledTag);
    assert.deepEqual([...m].sort(), [...list].sort());
    const again = summarizeCatalog([...list].reverse()).matches.map(formatPrecompiledTag);
    assert.deepEqual(again, m, "order does not depend on the registry's order");
  }));
});

test("bad filter values name the flag", () => {
  assert.throws(() => checkCatalogFilter({ kernel: "linux-5" }), /--kernel "linux-5" is not a kernel release/);
  assert.throws(() => checkCatalogFilter({ os: "Ubuntu 22.04" }), /OS tag "Ubuntu 22.04"/);
  assert.throws(() => checkCatalogFilter({ branch: "525.60.13" }), /525/);
});

test("plans the tag a node needs, with NVIDIA's support verdict", () => {
  const ok = planCheck({ node: "a", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04", arch: "amd64" }, "525", "nvcr.io/nvidia");
  assert.equal(ok.tag, "525-5.15.0-69-generic-ubuntu22.04");
  assert.equal(ok.published, true);
  const no = planCheck({ node: "b", kernel: "6.8.0-1046-azure-fde", osTag: "ubuntu24.04", arch: "amd64" }, "525", "nvcr.io/nvidia");
  assert.equal(no.published, false);
  assert.ok(no.reasons.length > 0);
  const custom = planCheck({ node: "b", kernel: "6.8.0-1046-azure-fde", osTag: "ubuntu24.04", arch: "amd64" }, "525", "127.0.0.1:5000/mine");
  assert.equal(custom.published, true, "a custom repository may hold any kernel");
});

test("exit code gates on every node having an image and no node problems", () => {
  const row = { node: "a", kernel: "k", osTag: "o", arch: "amd64", tag: "t", published: true, reasons: [] };
  assert.equal(checkExitCode([{ ...row, available: true }], 0), 0);
  assert.equal(checkExitCode([{ ...row, available: true }, { ...row, available: false }], 0), 1);
  assert.equal(checkExitCode([{ ...row, available: true }], 1), 2, "a node that could not be checked is not a missing image");
  assert.equal(checkExitCode([{ ...row, available: false }], 1), 1, "a missing image is the definite answer");
  assert.equal(checkExitCode([], 0), 0);
});

test("kernel falls back to nodeInfo when NFD has no kernel label", () => {
  const node: NodeLike = { metadata: { name: "n", labels: { x: "y" } }, status: { nodeInfo: { kernelVersion: "5.15.0-69-generic" } } };
  const r = withKernelFallback(node);
  assert.equal(r.kernelFrom, "nodeInfo");
  assert.equal(r.node.metadata.labels?.["feature.node.kubernetes.io/kernel-version.full"], "5.15.0-69-generic");
  assert.equal(node.metadata.labels?.["x"], "y");
  assert.equal(node.metadata.labels?.["feature.node.kubernetes.io/kernel-version.full"], undefined, "the input is not changed");
  assert.equal(withKernelFallback({ metadata: { name: "m" } }).kernelFrom, "none");
});
