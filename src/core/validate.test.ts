import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { validatePolicy, type PolicyValidation } from "./validate.ts";
import { RepositoryAllowList } from "./security.ts";
import { renderDriverDaemonSets } from "./render.ts";
import { classifyNodes, DEPLOY_DRIVER_LABEL, type NodeLike } from "./gpu-node.ts";
import type { ClusterPolicy, DriverSpec } from "./policy.ts";
import { gpuNodeObject } from "../../test/harness/nodes.ts";

function node(name: string, kernel = "5.15.0-69-generic", os = "ubuntu", version = "22.04", arch = "amd64", extra: Record<string, string> = {}): NodeLike {
  return gpuNodeObject({ name, kernel, os: { id: os, versionId: version }, arch, labels: extra });
}

function policy(driver: DriverSpec, spec: Record<string, unknown> = {}): ClusterPolicy {
  return { metadata: { name: "cluster-policy" }, spec: { ...spec, driver: { repository: "nvcr.io/nvidia", ...driver } } };
}

const reasons = (v: PolicyValidation) => v.errors.map((e) => e.reason);
const nodes = [node("gpu-1"), node("gpu-2", "5.15.0-70-generic")];

test("valid policies: conventional full version or digest, precompiled branch on a supported platform", () => {
  assert.deepEqual(validatePolicy(policy({ version: "550.54.15" }), nodes), { errors: [], warnings: [] });
  assert.deepEqual(validatePolicy(policy({ version: `sha256:${"0".repeat(64)}` }), nodes), { errors: [], warnings: [] });
  assert.deepEqual(validatePolicy(policy({ usePrecompiled: true, version: "525" }), nodes), { errors: [], warnings: [] });
  // A disabled driver needs no version.
  assert.deepEqual(validatePolicy(policy({ enabled: false }), nodes), { errors: [], warnings: [] });
});

test("precompiled with GDS, GDRCopy or vGPU says what to turn off", () => {
  const v = validatePolicy(
    policy({ usePrecompiled: true, version: "525" }, { gds: { enabled: true }, gdrcopy: { enabled: true }, vgpuManager: { enabled: true } }),
    nodes,
  );
  assert.deepEqual(reasons(v), ["PrecompiledConflictsWithGDS", "PrecompiledConflictsWithGDRCopy", "PrecompiledConflictsWithVGPU"]);
  assert.match(v.errors[0]?.message ?? "", /GPUDirect Storage.*set spec\.gds\.enabled to false, or spec\.driver\.usePrecompiled to false/);
  assert.match(v.errors[1]?.message ?? "", /GDRCopy.*spec\.gdrcopy\.enabled to false/);
  assert.match(v.errors[2]?.message ?? "", /vGPU.*spec\.vgpuManager\.enabled to false/);

  const sandbox = validatePolicy(policy({ usePrecompiled: true, version: "525" }, { sandboxWorkloads: { enabled: true, defaultWorkload: "vm-vgpu" } }), nodes);
  assert.deepEqual(reasons(sandbox), ["PrecompiledConflictsWithVGPU"]);
  const licensing = validatePolicy(policy({ usePrecompiled: true, version: "525", licensingConfig: { configMapName: "licensing", nlsEnabled: true } }), nodes);
  assert.deepEqual(reasons(licensing), ["PrecompiledConflictsWithVGPU"]);
  assert.match(licensing.errors[0]?.message ?? "", /remove spec\.driver\.licensingConfig/);
  // NVIDIA's Helm default (nlsEnabled, no config map) is not a vGPU guest driver.
  assert.deepEqual(reasons(validatePolicy(policy({ usePrecompiled: true, version: "525", licensingConfig: { nlsEnabled: true } }), nodes)), []);
  // The same settings are fine with conventional drivers.
  assert.deepEqual(reasons(validatePolicy(policy({ version: "550.54.15" }, { gds: { enabled: true }, vgpuManager: { enabled: true } }), nodes)), []);
  assert.deepEqual(reasons(validatePolicy(policy({ usePrecompiled: true, version: "525" }, { sandboxWorkloads: { enabled: true, defaultWorkload: "container" } }), nodes)), []);
});

test("precompiled needs a branch: full versions and digests are refused with the fix", () => {
  const full = validatePolicy(policy({ usePrecompiled: true, version: "525.105.17" }), nodes);
  assert.deepEqual(reasons(full), ["VersionNotABranch"]);
  assert.match(full.errors[0]?.message ?? "", /"525\.105\.17" is a full driver version.*set it to "525"/);
  assert.equal(full.errors[0]?.field, "spec.driver.version");
  const digest = validatePolicy(policy({ usePrecompiled: true, version: `sha256:${"a".repeat(64)}` }), nodes);
  assert.deepEqual(reasons(digest), ["VersionIsDigest"]);
  assert.match(digest.errors[0]?.message ?? "", /set it to a driver branch such as 550/);
  assert.deepEqual(reasons(validatePolicy(policy({ usePrecompiled: true, version: "latest" }), nodes)), ["VersionNotABranch"]);
  assert.deepEqual(reasons(validatePolicy(policy({ usePrecompiled: true }), nodes)), ["VersionMissing"]);
});

test("conventional needs a full version or digest; a branch (the seed's disable flow) only warns", () => {
  const bad = validatePolicy(policy({ version: "latest" }), nodes);
  assert.deepEqual(reasons(bad), ["VersionNotAFullVersion"]);
  assert.match(bad.errors[0]?.message ?? "", /set it to a version such as 550\.54\.15/);
  const branch = validatePolicy(policy({ version: "525" }), nodes);
  assert.deepEqual(branch.errors, []);
  assert.deepEqual(branch.warnings.map((w) => w.reason), ["ConventionalVersionIsBranch"]);
  const missing = validatePolicy(policy({}), nodes);
  assert.deepEqual(reasons(missing), ["VersionMissing"]);
  assert.match(missing.errors[0]?.message ?? "", /550\.54\.15/);
});

test("NVIDIA's repository: unsupported OS, architecture, flavor or branch are reported with the nodes", () => {
  const cluster = [
    node("ok-1"),
    node("rhel-1", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4"),
    node("rhel-2", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4"),
    node("arm-1", "5.15.0-69-generic", "ubuntu", "22.04", "arm64"),
    node("custom-1", "5.15.0-69-lowlatency"),
    node("skipped", "5.15.0-69-lowlatency", "ubuntu", "22.04", "amd64", { [DEPLOY_DRIVER_LABEL]: "pre-installed" }),
  ];
  const v = validatePolicy(policy({ usePrecompiled: true, version: "525" }), cluster);
  assert.ok(v.errors.every((e) => e.reason === "UnsupportedPlatform"));
  const byNodes = Object.fromEntries(v.errors.map((e) => [e.nodes?.join(","), e.message]));
  assert.deepEqual(Object.keys(byNodes).sort(), ["arm-1", "custom-1", "rhel-1,rhel-2"]);
  assert.match(byNodes["rhel-1,rhel-2"] ?? "", /OS 'rhel9'.*GPU nodes rhel-1, rhel-2/);
  assert.match(byNodes["custom-1"] ?? "", /flavor 'lowlatency'.*gpuop precompiled build.*GPU node custom-1/);
  assert.match(byNodes["arm-1"] ?? "", /arm64.*525/);
  // The same nodes are fine with a custom repository: only the registry knows what is there.
  assert.deepEqual(validatePolicy(policy({ usePrecompiled: true, version: "525", repository: "registry.example.com/gpu" }), cluster).errors, []);
  // An unpublished branch.
  const branch = validatePolicy(policy({ usePrecompiled: true, version: "999" }), [node("ok-1")]);
  assert.deepEqual(reasons(branch), ["UnsupportedPlatform"]);
  assert.match(branch.errors[0]?.message ?? "", /branch 999/);
});

test("many unsupported nodes: the message stays short, the list is complete", () => {
  const many = Array.from({ length: 25 }, (_, i) => node(`rhel-${String(i).padStart(2, "0")}`, "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4"));
  const v = validatePolicy(policy({ usePrecompiled: true, version: "525" }), many);
  assert.equal(v.errors.length, 1);
  assert.equal(v.errors[0]?.nodes?.length, 25);
  assert.match(v.errors[0]?.message ?? "", /and 15 more\)$/);
});

test("bad repository or image names are reported with an example", () => {
  const v = validatePolicy(policy({ repository: "nvcr.io/NVIDIA", version: "550.54.15" }), nodes);
  assert.deepEqual(reasons(v), ["InvalidImageReference"]);
  assert.match(v.errors[0]?.message ?? "", /lower case.*repository: nvcr\.io\/nvidia, image: driver/);
  const m = validatePolicy(policy({ version: "550.54.15", manager: { repository: "nvcr.io/nvidia/cloud-native", image: "Driver Manager" } }), nodes);
  assert.deepEqual(reasons(m), ["InvalidImageReference"]);
  assert.equal(m.errors[0]?.field, "spec.driver.manager");
});

test("a spec of the wrong shape is an error, not an exception", () => {
  const v = validatePolicy({ metadata: { name: "p" }, spec: { driver: { usePrecompiled: "yes" } } } as unknown as ClusterPolicy, nodes);
  assert.deepEqual(reasons(v), ["InvalidSpec"]);
  assert.match(v.errors[0]?.message ?? "", /usePrecompiled must be a boolean/);
});

// Labels hold at most 63 characters each, but a precompiled tag joins kernel and OS, and
// registries allow 128: only rendering finds such a tag too long (validatePolicy's last check).
const LONG_KERNEL = `5.15.0-69-${"g".repeat(53)}`;
const LONG_OS_ID = "o".repeat(58);

test("a node whose precompiled tag would be too long makes the policy invalid, saying what to set", () => {
  const v = validatePolicy(policy({ usePrecompiled: true, version: "550", repository: "registry.local:5000/gpu" }), [node("long", LONG_KERNEL, LONG_OS_ID, "22.04")]);
  assert.deepEqual(reasons(v), ["InvalidSpec"]);
  assert.match(v.errors[0]?.message ?? "", /^no driver image can be formed: tag "550-5\.15\.0-69-g+-o+22\.04" is 131 characters long.*; set spec\.driver\.repository, image and version so that one can, or set spec\.driver\.usePrecompiled to false$/);
  // Conventional tags leave the kernel out and fit.
  assert.deepEqual(validatePolicy(policy({ version: "550.54.15", repository: "registry.local:5000/gpu" }), [node("long", LONG_KERNEL, LONG_OS_ID, "22.04")]).errors, []);
});

// validatePolicy renders as its last check, so "no errors, then it renders" holds by
// construction; what this property checks is that every error, the render fallback's
// included (the long node), says what to set, and that no input throws.
test("property: every error says what to change, and a policy without errors renders", () => {
  const versionArb = fc.constantFrom(undefined, "", "525", "550", "999", "525.105.17", "550.54.15", "latest", `sha256:${"f".repeat(64)}`, "sha256:bad");
  const repoArb = fc.constantFrom(undefined, "nvcr.io/nvidia", "registry.local:5000/gpu", "Bad/Repo", "");
  const kernelArb = fc.constantFrom("5.15.0-69-generic", "6.8.0-45-aws", "5.14.0-427.13.1.el9_4.x86_64", "6.8.0-1049-nvidia-64k", LONG_KERNEL);
  const osArb = fc.constantFrom(["ubuntu", "22.04"], ["ubuntu", "24.04"], ["rhel", "9.4"], [LONG_OS_ID, "22.04"]);
  const nodesArb = fc.array(fc.tuple(kernelArb, osArb, fc.constantFrom("amd64", "arm64")), { maxLength: 6 }).map((specs) =>
    specs.map(([k, [os, v], arch], i) => node(`n${i}`, k, os, v, arch)),
  );
  fc.assert(
    fc.property(fc.boolean(), versionArb, repoArb, fc.boolean(), nodesArb, (usePrecompiled, version, repository, gds, cluster) => {
      const driver: DriverSpec = { usePrecompiled };
      if (version !== undefined) driver.version = version;
      const p: ClusterPolicy = { metadata: { name: "p" }, spec: { gds: { enabled: gds }, driver: repository === undefined ? driver : { ...driver, repository } } };
      const v = validatePolicy(p, cluster);
      for (const e of v.errors) assert.match(e.message, /set|use|remove|build|turn|give/i, e.message);
      if (v.errors.length === 0) renderDriverDaemonSets({ policy: p, nodes: cluster, namespace: "gpu-operator" });
    }),
    { numRuns: 300 },
  );
});

test("node facts (classifyNodes) and Node objects give the same answer", () => {
  const cluster = [node("ok-1"), node("rhel-1", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4"), { metadata: { name: "cpu" } }];
  const facts = classifyNodes(cluster).gpuNodes;
  for (const p of [policy({ usePrecompiled: true, version: "525" }), policy({ version: "550.54.15" })]) {
    assert.deepEqual(validatePolicy(p, facts), validatePolicy(p, cluster));
    const a = renderDriverDaemonSets({ policy: p, nodes: facts, namespace: "ns" });
    const b = renderDriverDaemonSets({ policy: p, nodes: cluster, namespace: "ns" });
    assert.deepEqual(a, b);
  }
});

test("each error names the field to change", () => {
  const field = (v: PolicyValidation) => v.errors.map((e) => `${e.reason}@${e.field}`);
  assert.deepEqual(field(validatePolicy(policy({ usePrecompiled: true }), nodes)), ["VersionMissing@spec.driver.version"]);
  assert.deepEqual(field(validatePolicy(policy({ usePrecompiled: true, version: "525" }, { gds: { enabled: true }, gdrcopy: { enabled: true }, vgpuDeviceManager: { enabled: true }, sandboxWorkloads: { enabled: true, defaultWorkload: "vm-vgpu" } }), nodes)), [
    "PrecompiledConflictsWithGDS@spec.gds.enabled",
    "PrecompiledConflictsWithGDRCopy@spec.gdrcopy.enabled",
    "PrecompiledConflictsWithVGPU@spec.vgpuDeviceManager.enabled",
    "PrecompiledConflictsWithVGPU@spec.sandboxWorkloads.enabled",
  ]);
  const digest = validatePolicy(policy({ usePrecompiled: true, version: `sha256:${"a".repeat(64)}` }), nodes);
  assert.deepEqual(field(digest), ["VersionIsDigest@spec.driver.version"]);
  // The digest is shortened in the message.
  assert.match(digest.errors[0]!.message, /^spec\.driver\.version is a digest \(sha256:a{12}…\), but/);
  assert.deepEqual(field(validatePolicy(policy({ usePrecompiled: true, version: "525" }), [node("rhel-1", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4")])), ["UnsupportedPlatform@spec.driver.repository"]);
  assert.deepEqual(field(validatePolicy(policy({ version: "latest" }), nodes)), ["VersionNotAFullVersion@spec.driver.version"]);
  const image = validatePolicy(policy({ repository: "nvcr.io/NVIDIA", version: "550.54.15" }), nodes);
  assert.deepEqual(field(image), ["InvalidImageReference@spec.driver"]);
  assert.match(image.errors[0]!.message, /^spec\.driver\.repository and spec\.driver\.image do not form an image name: "nvcr\.io\/NVIDIA\/driver"/);
  assert.doesNotMatch(image.errors[0]!.message, /:tag/);
  const branch = validatePolicy(policy({ version: "525" }), nodes);
  assert.equal(branch.warnings[0]?.field, "spec.driver.version");
  assert.match(branch.warnings[0]?.message ?? "", /^spec\.driver\.version "525" is a driver branch, so conventional images are pulled as 525-<os-tag>/);
});

test("a conventional digest must be exactly sha256: and 64 lower-case hex digits", () => {
  for (const bad of ["sha256:bad", `sha256:${"a".repeat(65)}`, `sha256:${"A".repeat(64)}`]) {
    const v = validatePolicy(policy({ version: bad }), nodes);
    assert.deepEqual(v.errors.map((e) => `${e.reason}@${e.field}`), ["VersionNotAFullVersion@spec.driver.version"], bad);
    assert.match(v.errors[0]!.message, /is not a digest: set it to sha256: followed by 64 lower-case hex digits/);
  }
});

test("repository and image: trailing slashes, an empty repository, a manager without one", () => {
  const ok = (driver: DriverSpec) => assert.deepEqual(validatePolicy(policy(driver), nodes).errors, [], JSON.stringify(driver));
  ok({ version: "550.54.15", repository: "registry.local:5000/gpu/" });
  ok({ version: "550.54.15", repository: "registry.local:5000/gpu//" });
  ok({ version: "550.54.15", repository: "", image: "registry.local:5000/gpu/driver" });
  ok({ version: "550.54.15", manager: { image: "registry.local:5000/gpu/k8s-driver-manager", version: "v0.8.0" } });
});

test("NVIDIA's platforms are checked when no repository is given (NVIDIA's is the default)", () => {
  const p: ClusterPolicy = { metadata: { name: "p" }, spec: { driver: { usePrecompiled: true, version: "525" } } };
  assert.deepEqual(reasons(validatePolicy(p, [node("rhel-1", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4")])), ["UnsupportedPlatform"]);
});

test("a node of unknown architecture is not judged; several reasons for one node are listed together", () => {
  const noArch = node("no-arch", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4");
  delete noArch.metadata.labels?.["kubernetes.io/arch"];
  delete (noArch.status as { nodeInfo?: unknown }).nodeInfo;
  assert.deepEqual(validatePolicy(policy({ usePrecompiled: true, version: "525" }), [noArch]).errors, []);
  const v = validatePolicy(policy({ usePrecompiled: true, version: "525" }), [node("rhel-1", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4")]);
  assert.equal(v.errors.length, 1);
  assert.match(v.errors[0]!.message, /OS 'rhel9'.*\); NVIDIA publishes no precompiled images for kernel flavor 'el9_4'/);
});

test("platform errors come sorted by reason, whatever the node order", () => {
  // Nodes are taken in name order; these names make that order neither sorted nor reversed.
  const cluster = [node("a-custom", "5.15.0-69-lowlatency"), node("b-arm", "5.15.0-69-generic", "ubuntu", "22.04", "arm64"), node("c-rhel", "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4")];
  for (const order of [cluster, [...cluster].reverse()]) {
    const messages = validatePolicy(policy({ usePrecompiled: true, version: "525" }), order).errors.map((e) => e.message);
    assert.equal(messages.length, 3);
    assert.deepEqual(messages, [...messages].sort());
  }
});

test("node lists in messages: ten are all shown, more are cut at ten", () => {
  const rhel = (n: number) => Array.from({ length: n }, (_, i) => node(`rhel-${String(i).padStart(2, "0")}`, "5.14.0-427.13.1.el9_4.x86_64", "rhel", "9.4"));
  const ten = validatePolicy(policy({ usePrecompiled: true, version: "525" }), rhel(10)).errors[0]!.message;
  assert.match(ten, /\(GPU nodes rhel-00, rhel-01, .*, rhel-09\)$/);
  assert.doesNotMatch(ten, /more/);
  const eleven = validatePolicy(policy({ usePrecompiled: true, version: "525" }), rhel(11)).errors[0]!.message;
  assert.match(eleven, /\(GPU nodes rhel-00, rhel-01, .*, rhel-09 and 1 more\)$/);
  assert.doesNotMatch(eleven, /rhel-10/);
});

test("a programming error is not turned into a policy error", () => {
  const broken = { metadata: { name: "p" }, get spec(): never { throw new TypeError("boom"); } } as unknown as ClusterPolicy;
  assert.throws(() => validatePolicy(broken, nodes), TypeError);
});

// Surviving mutants in validate.ts, explained:
// - The `if (!(err instanceof UserError)) throw err` guards around rendering and parseImageRef, and
//   the catch around checkPrecompiledSupport: for valid node facts these throw only UserErrors (the
//   support check none at all), so nothing reaches them.
// - renderDriverDaemonSets' namespace "validate" -> "": the namespace is not checked, and the result is dropped.
// - `if (!isNvidiaRepository(repository)) return` -> never return: checkPrecompiledSupport finds no
//   reason for a repository that is not NVIDIA's, so the answer is the same.
// - The sort comparator's `<` / `>` -> `<=` / `>=`, and the `a > b` case dropped or made 1 always:
//   the keys are a Map's, never equal, and V8's sort only asks whether the result is below zero.
// - The conventional digest regex without `^`: the version is known to start with "sha256:" there.
// - The per-platform cache of support reasons (`if (!reasons)` forced, `byPlatform.set` dropped):
//   the reasons are computed again for each node and come out the same; only the cost changes.
// - In checkAllowedImages, the `images.has` guards (forced either way) and the whole loop over the
//   rendered DaemonSets survive because the name set from repository and image and the rendered
//   images are refused under the same field; `imageNameOf`'s mutants (regex without `+`, the empty
//   repository case) survive because with GPU nodes the rendered images are refused as well and
//   decide the error. Not shown equivalent: a test without GPU nodes could tell some apart (open).
// - `list.sort()` and its ", " in the ImageNotAllowed message: with the policies tested, each
//   field's list is already in order, or has one image (open: a test with two pools could tell).
// (These are measured against validate.test.ts and security.test.ts only: `make mutate`.)

test("the security checks' errors word for word: fields, names, images sorted, manager settings, trailing slashes", () => {
  const manager = { image: "k8s-driver-manager", repository: "registry.example.com/tools//", version: "v1" };
  const allow = new RepositoryAllowList(["nvcr.io/nvidia"]);
  const v = validatePolicy(policy({ version: "550.54.15", manager: { ...manager, env: [{ name: "PATH", value: "/x" }], imagePullSecrets: ["", "Bad_Name"] }, imagePullSecrets: [""] }), nodes);
  // The images are checked as rendered, so only for a policy without other errors.
  const images = validatePolicy(policy({ version: "550.54.15", repository: "mirror.example.com/nvidia//", manager }), nodes, { allowedRepositories: allow });
  const by = (reason: string) => [...v.errors, ...images.errors].filter((e) => e.reason === reason).map((e) => [e.field, e.message]);
  assert.deepEqual(by("ForbiddenEnv"), [["spec.driver.manager.env", `spec.driver.manager.env sets "PATH", which a ClusterPolicy may not set: it changes which program or shell code the privileged container runs; remove it from spec.driver.manager.env`]]);
  assert.deepEqual(by("InvalidObjectName"), [["spec.driver.manager.imagePullSecrets[1]", `spec.driver.manager.imagePullSecrets[1] is "Bad_Name", which is not a Kubernetes object name: use lower-case letters, digits, '-' and '.' (at most 253), the name of an object in the operator's namespace`]], "an empty name is left out, not refused");
  const tail = "which is outside the operator's allowed image repositories (nvcr.io/nvidia)";
  assert.deepEqual(by("ImageNotAllowed"), [
    ["spec.driver.repository", `spec.driver renders image mirror.example.com/nvidia/driver, mirror.example.com/nvidia/driver:550.54.15-ubuntu22.04, ${tail}: set spec.driver.repository and image to an allowed repository, or ask the cluster admin to add it to the operator's --allowed-image-repositories`],
    ["spec.driver.manager.repository", `spec.driver.manager renders image registry.example.com/tools/k8s-driver-manager, registry.example.com/tools/k8s-driver-manager:v1, ${tail}: set spec.driver.manager.repository and image to an allowed repository, or ask the cluster admin to add it to the operator's --allowed-image-repositories`],
  ]);
});
