import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { checkCatalogFilter, checkExitCode, comparePrecompiledTags, compareVersionsDesc, kernelMatches, planCheck, summarizeCatalog, withKernelFallback } from "./catalog.ts";
import { UserError } from "./errors.ts";
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

test("kernel filters: the whole release or a leading part ending at '-' or '.', nothing else", () => {
  assert.ok(kernelMatches("5.15.0-69-generic", "5.15.0-69-generic"));
  assert.ok(kernelMatches("5.15.0-69-generic", "5.15.0-69"));
  assert.ok(kernelMatches("5.15.0-69-generic", "5.15"));
  assert.ok(kernelMatches("5.14.0-427.13.1.el9_4.x86_64", "5.14.0-427.13"));
  assert.ok(!kernelMatches("5.15.0-69-generic", "5.15.0-6"));
  assert.ok(!kernelMatches("5.15.0-69-generic", "5.1"));
  assert.ok(!kernelMatches("5.15.0-69-generic", "5.15.0-69-gen"));
  assert.ok(!kernelMatches("5.15.0-69", "5.15.0-69-generic"));
  assert.ok(!kernelMatches("6.5.15.0-69-generic", "5.15.0"), "a filter matches from the start only");
});

test("filter values: kernels start with a digit and hold no other characters; good values pass", () => {
  for (const k of ["5", "5.15.0-69-generic", "5.14.0-427.13.1.el9_4.x86_64", "6.8.0+rt"]) assert.doesNotThrow(() => checkCatalogFilter({ kernel: k }));
  for (const k of ["", "v5.15", "5.15.0 69", "5.15.0-69;true", "5.15.0/69"]) {
    assert.throws(() => checkCatalogFilter({ kernel: k }), (e: unknown) => e instanceof UserError && e.message === `--kernel "${k}" is not a kernel release or its beginning, like 5.15.0-69-generic or 5.15.0`, k);
  }
  assert.doesNotThrow(() => checkCatalogFilter({ branch: "580", os: "rhel9.4", kernel: "5.14.0" }));
  assert.doesNotThrow(() => checkCatalogFilter({}));
});

test("precompiled tags order: branch (numerically, highest first), OS ID (alphabetically), OS version (numerically, newest first), newest kernel", () => {
  const order = (list: string[]) => summarizeCatalog(list).matches.map(formatPrecompiledTag);
  assert.deepEqual(order(["1000-5.15.0-69-generic-ubuntu22.04", "999-5.15.0-69-generic-ubuntu22.04"]), ["1000-5.15.0-69-generic-ubuntu22.04", "999-5.15.0-69-generic-ubuntu22.04"]);
  assert.deepEqual(order(["550-5.14.0-427-generic-ubuntu22.04", "550-5.14.0-427-generic-rhel9.4"]), ["550-5.14.0-427-generic-rhel9.4", "550-5.14.0-427-generic-ubuntu22.04"]);
  assert.deepEqual(order(["550-5.14.0-427-generic-rhel9.4", "550-5.14.0-427-generic-rhel9.10", "550-5.14.0-427-generic-rhel9", "550-5.14.0-427-generic-rhel10"]), [
    "550-5.14.0-427-generic-rhel10",
    "550-5.14.0-427-generic-rhel9.10",
    "550-5.14.0-427-generic-rhel9.4",
    "550-5.14.0-427-generic-rhel9",
  ]);
  assert.deepEqual(order(["550-5.15.0-9-generic-ubuntu22.04", "550-5.15.0-10-generic-ubuntu22.04"]), ["550-5.15.0-10-generic-ubuntu22.04", "550-5.15.0-9-generic-ubuntu22.04"]);
  assert.equal(comparePrecompiledTags({ branch: "550", kernel: "5.15.0-9-generic", osTag: "ubuntu22.04" }, { branch: "550", kernel: "5.15.0-9-generic", osTag: "ubuntu22.04" }), 0);
});

test("the latest tag: highest branch, then newest kernel whatever the OS; without precompiled tags the newest full version", () => {
  // The newest kernel wins over the newer OS: registries keep no dates, kernels come in order.
  assert.equal(summarizeCatalog(["580-6.8.0-40-generic-ubuntu22.04", "580-5.15.0-200-generic-ubuntu24.04", "570-6.9.0-1-generic-ubuntu24.04"]).latestTag, "580-6.8.0-40-generic-ubuntu22.04");
  assert.equal(summarizeCatalog(["580-5.15.0-200-generic-ubuntu24.04", "580-6.8.0-40-generic-ubuntu22.04"]).latestTag, "580-6.8.0-40-generic-ubuntu22.04");
  assert.equal(summarizeCatalog(["550.54.15-ubuntu22.04", "550.127.05-ubuntu22.04", "latest"]).latestTag, "550.127.05-ubuntu22.04", "127 > 54, not by text");
  assert.equal(summarizeCatalog(["b", "a"]).latestTag, "b");
  const s = summarizeCatalog(["x", "550.54.15-ubuntu22.04"]);
  assert.deepEqual([s.tagCount, s.precompiledTagCount, s.matches], [2, 0, []]);
});

test("compareVersionsDesc: newest first, by number part by part, a longer version after its prefix is newer", () => {
  assert.ok(compareVersionsDesc("525.105.17", "525.60.13") < 0);
  assert.ok(compareVersionsDesc("525.60.13", "525.105.17") > 0);
  assert.ok(compareVersionsDesc("550.54.15", "550.54") < 0);
  assert.ok(compareVersionsDesc("550.54", "550.54.15") > 0);
  assert.equal(compareVersionsDesc("550.54.15", "550.54.15"), 0);
  assert.deepEqual(["535.54.03", "535.183.01", "580.65.06", "535.183"].sort(compareVersionsDesc), ["580.65.06", "535.183.01", "535.183", "535.54.03"]);
});

test("filters compare whole values: branch 52 is not 525, OS ubuntu22 is not ubuntu22.04; filters combine", () => {
  assert.deepEqual(summarizeCatalog(tags, { branch: "52" }).matches, []);
  assert.deepEqual(summarizeCatalog(tags, { os: "ubuntu22" }).matches, []);
  assert.deepEqual(summarizeCatalog(tags, { branch: "580", os: "ubuntu22.04" }).matches.map(formatPrecompiledTag), ["580-5.15.0-1103-aws-ubuntu22.04"]);
  assert.deepEqual(summarizeCatalog(tags, { os: "ubuntu24.04", kernel: "6.8.0-1046" }).matches.map(formatPrecompiledTag), ["580-6.8.0-1046-azure-fde-ubuntu24.04"]);
  assert.equal(summarizeCatalog(tags, { branch: "580" }).latestTag, "580-6.8.0-1047-oracle-ubuntu24.04", "the latest tag ignores the filter");
});

test("kernel fallback: an empty NFD label is none; the node's other fields are kept; a labelled node comes back as it is", () => {
  const node: NodeLike = { metadata: { name: "n", labels: { "feature.node.kubernetes.io/kernel-version.full": "" }, annotations: { a: "b" } }, status: { nodeInfo: { kernelVersion: "6.8.0-40-generic" } } };
  const r = withKernelFallback(node);
  assert.equal(r.kernelFrom, "nodeInfo");
  assert.deepEqual(r.node, { metadata: { name: "n", labels: { "feature.node.kubernetes.io/kernel-version.full": "6.8.0-40-generic" }, annotations: { a: "b" } }, status: { nodeInfo: { kernelVersion: "6.8.0-40-generic" } } });
  assert.equal(withKernelFallback({ metadata: { name: "m" }, status: { nodeInfo: { kernelVersion: "" } } }).kernelFrom, "none");
  const labelled: NodeLike = { metadata: { name: "l", labels: { "feature.node.kubernetes.io/kernel-version.full": "5.15.0-69-generic" } }, status: { nodeInfo: { kernelVersion: "6.8.0-40-generic" } } };
  const l = withKernelFallback(labelled);
  assert.equal(l.kernelFrom, "label");
  assert.equal(l.node, labelled);
});

test("planCheck keeps the target, refuses a kernel that is not one, and gives no reasons for a published tag", () => {
  const target = { node: "gpu-7", kernel: "6.8.0-1047-oracle", osTag: "ubuntu24.04", arch: "arm64" };
  const plan = planCheck(target, "580", "nvcr.io/nvidia");
  assert.deepEqual({ ...plan, published: undefined, reasons: undefined }, { ...target, tag: "580-6.8.0-1047-oracle-ubuntu24.04", published: undefined, reasons: undefined });
  assert.throws(() => planCheck({ ...target, kernel: "not-a-kernel" }, "580", "nvcr.io/nvidia"), UserError);
  assert.deepEqual(planCheck({ node: "a", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04", arch: "amd64" }, "525", "nvcr.io/nvidia").reasons, []);
});

test("orders hold whatever order the registry lists tags in; a version with one more part is the newer", () => {
  const both = (list: string[], want: string[]) => {
    assert.deepEqual(summarizeCatalog(list).matches.map(formatPrecompiledTag), want);
    assert.deepEqual(summarizeCatalog([...list].reverse()).matches.map(formatPrecompiledTag), want);
  };
  both(["550-5.14.0-427-generic-ubuntu22.04", "550-5.14.0-427-generic-rhel9.4"], ["550-5.14.0-427-generic-rhel9.4", "550-5.14.0-427-generic-ubuntu22.04"]);
  both(["550-5.14.0-427-generic-rhel9", "550-5.14.0-427-generic-rhel9.4"], ["550-5.14.0-427-generic-rhel9.4", "550-5.14.0-427-generic-rhel9"]);
  both(["550-5.14.0-427-generic-rhel9", "550-5.14.0-427-generic-rhel9.0"], ["550-5.14.0-427-generic-rhel9.0", "550-5.14.0-427-generic-rhel9"]);
  assert.ok(compareVersionsDesc("550.54.0", "550.54") < 0);
  assert.ok(compareVersionsDesc("550.54", "550.54.0") > 0);
});

test("planCheck names a bad kernel as the kernel, not as a tag; a node without nodeInfo has no kernel", () => {
  assert.throws(() => planCheck({ node: "n", kernel: "not-a-kernel", osTag: "ubuntu24.04", arch: "amd64" }, "580", "nvcr.io/nvidia"), (e: unknown) => e instanceof UserError && e.message.startsWith('kernel release "not-a-kernel"'));
  assert.equal(withKernelFallback({ metadata: { name: "n" }, status: {} }).kernelFrom, "none");
});

// Surviving mutant in catalog.ts, equivalent: summarizeCatalog's `if (!(err instanceof UserError)) throw err` -> `if (false)`:
// parsePrecompiledTag throws nothing but UserError, so no tag reaches the rethrow.
// Also equivalent: the catch block emptied (UserErrors are skipped either way); the loops' `i < Math.max(...)` ->
// `<=` (one more round with both parts missing gives 0); compareOsTagsDesc's `pa.id < pb.id` -> `<=` (the ids differ there).
// Also equivalent: byNumberDesc's text tie-break (`a < b ? 1 : ...`) after equal numbers: branches have no leading
// zeros (tag.ts BRANCH), so equal numbers are equal strings.
