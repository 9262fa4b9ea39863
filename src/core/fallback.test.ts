import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DEFAULT_PULL_GRACE_MS,
  FALLBACK_REASON_ANNOTATION,
  PULL_FAILED_ANNOTATION,
  decideNodeDriver,
  describeDriverPlans,
  fallbackEnabled,
  FALLBACK_ANNOTATION,
  newestConventionalVersion,
  parseKernelFlags,
  preflightExitCode,
  preflightRow,
  poolsWithFallback,
  pullFailure,
  renderFallbackDaemonSets,
  resolveConventional,
  type NodeDriverPlan,
  type NodePrecompiled,
} from "./fallback.ts";
import { normalizePolicy, type ClusterPolicy } from "./policy.ts";
import { UserError } from "./errors.ts";
import { POOL_NODE_LABEL } from "./rollout.ts";
import { gpuNodeObject } from "../../test/harness/nodes.ts";

test("a branch resolves to the newest full version the registry holds for the OS tag", () => {
  const tags = [
    "525.60.13-ubuntu22.04", "525.105.17-ubuntu22.04", "525.147.05-ubuntu24.04", "535.183.01-ubuntu22.04",
    "525-5.15.0-69-generic-ubuntu22.04", "latest", "525.99.1-rhel9",
  ];
  assert.equal(newestConventionalVersion("525", "ubuntu22.04", tags), "525.105.17");
  assert.equal(newestConventionalVersion("525", "ubuntu24.04", tags), "525.147.05");
  assert.equal(newestConventionalVersion("535", "ubuntu22.04", tags), "535.183.01");
  assert.equal(newestConventionalVersion("525", "rhel9", tags), "525.99.1");
  assert.equal(newestConventionalVersion("550", "ubuntu22.04", tags), undefined);
  assert.equal(newestConventionalVersion("525", "ubuntu20.04", tags), undefined);
});

test("property: the resolved version is listed, of the branch and OS, and no listed one of them is newer", () => {
  const version = fc.tuple(fc.constantFrom("525", "535"), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 99 }))
    .map(([b, minor, patch]) => `${b}.${minor}.${String(patch).padStart(2, "0")}`);
  const tag = fc.tuple(version, fc.constantFrom("ubuntu22.04", "ubuntu24.04")).map(([v, os]) => `${v}-${os}`);
  fc.assert(fc.property(fc.array(tag, { maxLength: 30 }), (tags) => {
    const got = newestConventionalVersion("525", "ubuntu22.04", tags);
    const candidates = tags.filter((t) => t.startsWith("525.") && t.endsWith("-ubuntu22.04")).map((t) => t.slice(0, t.indexOf("-")));
    if (candidates.length === 0) return got === undefined;
    if (got === undefined || !candidates.includes(got)) return false;
    const num = (v: string) => v.split(".").map(Number);
    return candidates.every((c) => {
      const [a, b] = [num(c), num(got)];
      return a[1]! < b[1]! || (a[1] === b[1] && a[2]! <= b[2]!);
    });
  }));
});

test("the policy's annotation turns the fallback on or off; a bad value keeps the operator's setting, with a warning", () => {
  assert.deepEqual(fallbackEnabled(true, undefined), { enabled: true });
  assert.deepEqual(fallbackEnabled(false, {}), { enabled: false });
  assert.deepEqual(fallbackEnabled(true, { [FALLBACK_ANNOTATION]: "false" }), { enabled: false });
  assert.deepEqual(fallbackEnabled(false, { [FALLBACK_ANNOTATION]: "True" }), { enabled: true });
  const bad = fallbackEnabled(true, { [FALLBACK_ANNOTATION]: "no" });
  assert.equal(bad.enabled, true);
  assert.match(bad.warning ?? "", /conventional-fallback="no" is neither "true" nor "false"/);
});

const podAt = (reason: string | undefined, notReadySince?: string) => ({
  metadata: { creationTimestamp: "2026-01-01T09:00:00Z" },
  spec: { containers: [{ name: "nvidia-driver-ctr", image: "r/driver:525-k-ubuntu22.04" }] },
  status: {
    startTime: "2026-01-01T09:00:05Z",
    conditions: notReadySince ? [{ type: "ContainersReady", status: "False", lastTransitionTime: notReadySince }] : [],
    containerStatuses: [{ name: "nvidia-driver-ctr", state: reason ? { waiting: { reason } } : { running: {} } }],
  },
});

test("a pull failure is timed from the pod's own status, so an operator restart keeps the grace period", () => {
  const now = Date.parse("2026-01-01T10:00:00Z");
  const grace = 10 * 60_000;
  assert.equal(pullFailure(podAt(undefined), "nvidia-driver-ctr", now, grace), undefined);
  assert.equal(pullFailure(podAt("ContainerCreating"), "nvidia-driver-ctr", now, grace), undefined);
  const fresh = pullFailure(podAt("ErrImagePull", "2026-01-01T09:55:00Z"), "nvidia-driver-ctr", now, grace);
  assert.deepEqual(fresh, { image: "r/driver:525-k-ubuntu22.04", reason: "ErrImagePull", since: "2026-01-01T09:55:00Z", remainingMs: 5 * 60_000 });
  const old = pullFailure(podAt("ImagePullBackOff", "2026-01-01T09:40:00Z"), "nvidia-driver-ctr", now, grace);
  assert.equal(old?.remainingMs, 0);
  // Without the condition, the pod's start time.
  assert.equal(pullFailure(podAt("ImagePullBackOff"), "nvidia-driver-ctr", now, grace)?.since, "2026-01-01T09:00:05Z");
});

const precompiled = (over: Partial<NodePrecompiled> = {}): NodePrecompiled => ({
  node: "g1", osTag: "ubuntu22.04", pool: "nvidia-driver-daemonset-5.15.0-70-generic-ubuntu22.04",
  image: "reg/nvidia/driver:525-5.15.0-70-generic-ubuntu22.04", missing: false, ...over,
});
const found = { found: true as const, version: "525.105.17", image: "reg/nvidia/driver:525.105.17-ubuntu22.04" };

test("a node keeps its precompiled pool while the image is there and pulls", () => {
  assert.deepEqual(decideNodeDriver(precompiled(), found, true), { node: "g1", osTag: "ubuntu22.04", mode: "precompiled", pool: "nvidia-driver-daemonset-5.15.0-70-generic-ubuntu22.04", image: "reg/nvidia/driver:525-5.15.0-70-generic-ubuntu22.04" });
  // A pull failure of another image (an older kernel's) is stale: try the new one.
  assert.equal(decideNodeDriver(precompiled({ pullFailedImage: "reg/nvidia/driver:525-5.15.0-69-generic-ubuntu22.04" }), found, true).mode, "precompiled");
});

test("a missing precompiled image sends the node to the conventional DaemonSet of its OS", () => {
  const plan = decideNodeDriver(precompiled({ missing: true }), found, true);
  assert.equal(plan.mode, "fallback");
  assert.ok(plan.mode === "fallback");
  assert.equal(plan.pool, "nvidia-driver-daemonset-ubuntu22.04");
  assert.equal(plan.image, "reg/nvidia/driver:525.105.17-ubuntu22.04");
  assert.equal(plan.cause, "missing");
  assert.match(plan.reason, /the registry has no precompiled image reg\/nvidia\/driver:525-5\.15\.0-70-generic-ubuntu22\.04/);
  const pulled = decideNodeDriver(precompiled({ pullFailedImage: "reg/nvidia/driver:525-5.15.0-70-generic-ubuntu22.04" }), found, true);
  assert.equal(pulled.mode, "fallback");
  assert.ok(pulled.mode === "fallback");
  assert.equal(pulled.cause, "pull-failed");
  assert.match(pulled.reason, /could not be pulled on the node/);
});

test("no driver, in those words, when the fallback is off or has no image either", () => {
  const off = decideNodeDriver(precompiled({ missing: true }), found, false);
  assert.equal(off.mode, "none");
  assert.ok(off.mode === "none");
  assert.match(off.reason, /conventional fallback is turned off/);
  const policy = normalizePolicy({ metadata: { name: "p" }, spec: { driver: { usePrecompiled: true, version: "525", repository: "reg/nvidia", image: "driver" } } });
  const nothing = decideNodeDriver(precompiled({ missing: true }), resolveConventional(policy.spec.driver, "ubuntu22.04", ["550.54.15-ubuntu22.04"]), true);
  assert.ok(nothing.mode === "none");
  assert.match(nothing.reason, /the registry has no conventional 525 image for ubuntu22\.04 either/);
  const unlisted = resolveConventional(policy.spec.driver, "ubuntu22.04", undefined, "HTTP 500");
  assert.deepEqual(unlisted, { found: false, reason: "the conventional 525 images could not be listed (HTTP 500)" });
  assert.deepEqual(resolveConventional(policy.spec.driver, "ubuntu22.04", ["525.60.13-ubuntu22.04", "525.105.17-ubuntu22.04"]),
    { found: true, version: "525.105.17", image: "reg/nvidia/driver:525.105.17-ubuntu22.04" });
});

test("the fallback DaemonSets are the conventional ones of the resolved version, one per OS, selecting only by pool label", () => {
  const policy: ClusterPolicy = { metadata: { name: "cluster-policy", uid: "u1" }, spec: { driver: { usePrecompiled: true, version: "525", repository: "reg/nvidia", image: "driver" } } };
  const nodes = [
    gpuNodeObject({ name: "a", kernel: "5.15.0-70-generic", labels: { "nvidia.com/gpu.deploy.driver": "true" } }),
    gpuNodeObject({ name: "b", kernel: "6.8.0-40-generic", os: { id: "ubuntu", versionId: "24.04" }, labels: { "nvidia.com/gpu.deploy.driver": "true" } }),
    gpuNodeObject({ name: "c", kernel: "5.15.0-69-generic", labels: { "nvidia.com/gpu.deploy.driver": "true" } }),
  ];
  const plans: NodeDriverPlan[] = [
    { node: "a", osTag: "ubuntu22.04", mode: "fallback", pool: "nvidia-driver-daemonset-ubuntu22.04", image: "reg/nvidia/driver:525.105.17-ubuntu22.04", version: "525.105.17", precompiledImage: "x", cause: "missing", reason: "r" },
    { node: "b", osTag: "ubuntu24.04", mode: "fallback", pool: "nvidia-driver-daemonset-ubuntu24.04", image: "reg/nvidia/driver:525.147.05-ubuntu24.04", version: "525.147.05", precompiledImage: "y", cause: "pull-failed", reason: "r" },
    { node: "c", osTag: "ubuntu22.04", mode: "precompiled", pool: "p", image: "i" },
  ];
  const out = renderFallbackDaemonSets({ policy, nodes, namespace: "gpu-operator" }, plans);
  assert.deepEqual(out.pools.map((p) => [p.name, p.image, p.precompiled, p.nodes]), [
    ["nvidia-driver-daemonset-ubuntu22.04", "reg/nvidia/driver:525.105.17-ubuntu22.04", false, ["a"]],
    ["nvidia-driver-daemonset-ubuntu24.04", "reg/nvidia/driver:525.147.05-ubuntu24.04", false, ["b"]],
  ]);
  const ds = out.daemonSets[0]!;
  assert.equal(ds.spec.template.spec.nodeSelector[POOL_NODE_LABEL], "nvidia-driver-daemonset-ubuntu22.04");
  assert.equal(ds.spec.template.spec.nodeSelector["feature.node.kubernetes.io/kernel-version.full"], undefined, "a conventional driver is not tied to a kernel");
  assert.equal(ds.metadata.ownerReferences?.[0]?.uid, "u1");
  assert.deepEqual(renderFallbackDaemonSets({ policy, nodes, namespace: "gpu-operator" }, [plans[2]!]), { daemonSets: [], pools: [] });
});

test("status sentences name the nodes without a driver apart from those that keep one", () => {
  const plans: NodeDriverPlan[] = [
    { node: "g1", osTag: "ubuntu22.04", mode: "none", precompiledImage: "i70", cause: "missing", reason: "the registry has no precompiled image i70, and no conventional either" },
    { node: "g2", osTag: "ubuntu22.04", mode: "none", precompiledImage: "i70", cause: "missing", reason: "the registry has no precompiled image i70, and no conventional either" },
    { node: "g3", osTag: "ubuntu22.04", mode: "fallback", pool: "p", image: "c:525.105.17-ubuntu22.04", version: "525.105.17", precompiledImage: "i71", cause: "missing", reason: "the registry has no precompiled image i71" },
    { node: "g4", osTag: "ubuntu22.04", mode: "precompiled", pool: "p", image: "i" },
  ];
  const d = describeDriverPlans(plans, new Set(["g2"]));
  assert.equal(d.noDriver, "g1: no driver (the registry has no precompiled image i70, and no conventional either)");
  assert.equal(d.keeping, "g2: keeps the driver it runs now (the registry has no precompiled image i70, and no conventional either)");
  assert.equal(d.fallback, "g3: conventional driver c:525.105.17-ubuntu22.04 (fallback: the registry has no precompiled image i71)");
  assert.doesNotMatch(d.noDriver, /keep/);
});

test("preflight --kernel: one release for every OS, or one per OS tag; bad input names the flag", () => {
  assert.deepEqual([...parseKernelFlags(["5.15.0-91-generic"])], [["*", "5.15.0-91-generic"]]);
  assert.deepEqual([...parseKernelFlags(["ubuntu22.04=5.15.0-91-generic", "ubuntu24.04=6.8.0-45-generic"])],
    [["ubuntu22.04", "5.15.0-91-generic"], ["ubuntu24.04", "6.8.0-45-generic"]]);
  assert.throws(() => parseKernelFlags([]), /give the kernel to check with --kernel/);
  assert.throws(() => parseKernelFlags(["5.15.0-91-generic", "5.15.0-92-generic"]), /given twice for every OS/);
  assert.throws(() => parseKernelFlags(["ubuntu22.04=not a kernel"]), /--kernel ubuntu22\.04=not a kernel:/);
  assert.throws(() => parseKernelFlags(["debian=5.15.0-91-generic"]), /debian/);
});

test("preflight exit code: 1 when a node would have no driver, 2 when some could not be judged, else 0", () => {
  const row = { node: "a", osTag: "ubuntu22.04", arch: "amd64", kernel: "k", unchanged: false, image: "i", reason: "" };
  assert.equal(preflightExitCode([{ ...row, result: "precompiled" }, { ...row, result: "fallback" }], 0), 0);
  assert.equal(preflightExitCode([{ ...row, result: "precompiled" }, { ...row, result: "none" }], 1), 1);
  assert.equal(preflightExitCode([{ ...row, result: "fallback" }], 1), 2);
  assert.equal(preflightExitCode([], 0), 0);
});

test("nodes sent to the fallback leave their precompiled pool; a pool left empty or with a missing image is dropped", () => {
  const pool = (name: string, nodes: string[], precompiled = true) => ({ name, osTag: "ubuntu22.04", image: `i-${name}`, precompiled, nodes, ...(precompiled ? { kernel: name } : {}) });
  const out = poolsWithFallback(
    [pool("k69", ["a", "b"]), pool("k70", ["c"]), pool("k71", ["d"])],
    new Set(["k70"]),
    new Set(["b", "c", "d"]),
    [pool("conv", ["b", "d"], false)],
  );
  assert.deepEqual(out.map((p) => [p.name, p.nodes]), [["k69", ["a"]], ["conv", ["b", "d"]]]);
});

test("preflight rows: the target as given, the image unless there is none, the reason unless precompiled", () => {
  const target = { node: "g1", osTag: "ubuntu22.04", arch: "arm64", kernel: "5.15.0-70-generic", unchanged: true };
  assert.deepEqual(preflightRow(target, { node: "g1", osTag: "ubuntu22.04", mode: "precompiled", pool: "p", image: "r/driver:550-5.15.0-70-generic-ubuntu22.04" }), { ...target, result: "precompiled", image: "r/driver:550-5.15.0-70-generic-ubuntu22.04", reason: "" });
  assert.deepEqual(
    preflightRow(target, { node: "g1", osTag: "ubuntu22.04", mode: "fallback", pool: "c", image: "r/driver:550.90.07-ubuntu22.04", version: "550.90.07", precompiledImage: "x", cause: "missing", reason: "the registry has no precompiled image x" }),
    { ...target, result: "fallback", image: "r/driver:550.90.07-ubuntu22.04", reason: "the registry has no precompiled image x" },
  );
  assert.deepEqual(preflightRow(target, { node: "g1", osTag: "ubuntu22.04", mode: "none", precompiledImage: "x", cause: "pull-failed", reason: "nothing to pull" }), { ...target, result: "none", image: "", reason: "nothing to pull" });
});

test("pull failures: the named container only, its spec image less a pinned digest, the ContainersReady time only while False", () => {
  const now = Date.parse("2026-01-01T10:00:00Z");
  const digest = `sha256:${"e".repeat(64)}`;
  const pod = (over: Record<string, unknown> = {}) => ({
    metadata: { creationTimestamp: "2026-01-01T09:00:00Z" },
    spec: { containers: [{ name: "sidecar", image: "r/side:1" }, { name: "nvidia-driver-ctr", image: `r/driver:550-k-ubuntu22.04@${digest}` }] },
    status: {
      startTime: "2026-01-01T09:30:00Z",
      conditions: [{ type: "Ready", status: "False", lastTransitionTime: "2026-01-01T09:10:00Z" }, { type: "ContainersReady", status: "False", lastTransitionTime: "2026-01-01T09:58:00Z" }],
      containerStatuses: [{ name: "sidecar", state: { waiting: { reason: "ImagePullBackOff" } } }, { name: "nvidia-driver-ctr", image: "r/driver:from-status", state: { waiting: { reason: "ErrImagePull" } } }],
    },
    ...over,
  });
  assert.deepEqual(pullFailure(pod(), "nvidia-driver-ctr", now, 5 * 60_000), { image: "r/driver:550-k-ubuntu22.04", reason: "ErrImagePull", since: "2026-01-01T09:58:00Z", remainingMs: 3 * 60_000 });
  // A digest that is not the whole end stays; without a spec, the status's image.
  const odd = pod({ spec: { containers: [{ name: "nvidia-driver-ctr", image: `r/driver:x@${digest}0` }] } });
  assert.equal(pullFailure(odd, "nvidia-driver-ctr", now, 0)?.image, `r/driver:x@${digest}0`);
  assert.equal(pullFailure(pod({ spec: {} }), "nvidia-driver-ctr", now, 0)?.image, "r/driver:from-status");
  assert.equal(pullFailure({ metadata: {}, status: { containerStatuses: [{ name: "nvidia-driver-ctr", state: { waiting: { reason: "ErrImagePull" } } }] } }, "nvidia-driver-ctr", now, 0)?.image, "");
  // ContainersReady True is no start; then the pod's start time; then its creation; then now, with the whole grace left.
  const ready = pod();
  ready.status.conditions = [{ type: "ContainersReady", status: "True", lastTransitionTime: "2026-01-01T09:59:00Z" }];
  assert.equal(pullFailure(ready, "nvidia-driver-ctr", now, 0)?.since, "2026-01-01T09:30:00Z");
  const noStart = { metadata: { creationTimestamp: "2026-01-01T09:20:00Z" }, status: { containerStatuses: [{ name: "nvidia-driver-ctr", state: { waiting: { reason: "ImagePullBackOff" } } }] } };
  assert.equal(pullFailure(noStart, "nvidia-driver-ctr", now, 0)?.since, "2026-01-01T09:20:00Z");
  assert.deepEqual(pullFailure({ metadata: { creationTimestamp: "soon" }, status: noStart.status }, "nvidia-driver-ctr", now, 7000), { image: "", reason: "ImagePullBackOff", since: "2026-01-01T10:00:00.000Z", remainingMs: 7000 });
  assert.equal(pullFailure({ metadata: {}, status: noStart.status }, "nvidia-driver-ctr", now, 7000)?.remainingMs, 7000);
  assert.equal(pullFailure({ metadata: {} }, "nvidia-driver-ctr", now, 0), undefined);
  assert.equal(pullFailure({ metadata: {}, status: {} }, "nvidia-driver-ctr", now, 0), undefined);
  assert.equal(pullFailure({ metadata: {}, status: { containerStatuses: [{ name: "nvidia-driver-ctr" }] } }, "nvidia-driver-ctr", now, 0), undefined);
  assert.equal(pullFailure({ metadata: {}, status: { containerStatuses: [{ name: "nvidia-driver-ctr", state: { running: {} } }] } }, "nvidia-driver-ctr", now, 0), undefined);
  assert.equal(DEFAULT_PULL_GRACE_MS, 300_000);
});

test("plan sentences: nodes sorted, at most ten named, one sentence per distinct outcome, joined by semicolons", () => {
  const none = (node: string, reason: string): NodeDriverPlan => ({ node, osTag: "ubuntu22.04", mode: "none", precompiledImage: "i", cause: "missing", reason });
  const many = Array.from({ length: 12 }, (_, i) => none(`n${String(12 - i).padStart(2, "0")}`, "r1"));
  const d = describeDriverPlans([...many, none("b", "r2"), none("a", "r2")], new Set());
  assert.equal(d.noDriver, "n01, n02, n03, n04, n05, n06, n07, n08, n09, n10 and 2 more: no driver (r1); a, b: no driver (r2)");
  const ten = describeDriverPlans(many.slice(0, 10), new Set());
  assert.equal(ten.noDriver, "n03, n04, n05, n06, n07, n08, n09, n10, n11, n12: no driver (r1)");
  assert.deepEqual(describeDriverPlans([], new Set()), { fallback: "", noDriver: "", keeping: "" });
});

test("--kernel values: a bare release and one per OS may be mixed; an OS given twice is refused by name", () => {
  assert.deepEqual([...parseKernelFlags(["5.15.0-91-generic", "ubuntu24.04=6.8.0-45-generic"])], [["*", "5.15.0-91-generic"], ["ubuntu24.04", "6.8.0-45-generic"]]);
  assert.throws(() => parseKernelFlags(["ubuntu24.04=6.8.0-45-generic", "ubuntu24.04=6.8.0-46-generic"]), (e: unknown) => e instanceof UserError && e.message === "--kernel is given twice for ubuntu24.04: give one release per OS tag");
  assert.throws(() => parseKernelFlags(["=6.8.0-45-generic"]), UserError);
  assert.throws(() => parseKernelFlags(["ubuntu24.04="]), (e: unknown) => e instanceof UserError && e.message.startsWith("--kernel ubuntu24.04=: kernel release is empty"));
  assert.throws(() => parseKernelFlags(["bad kernel"]), (e: unknown) => e instanceof UserError && e.message.startsWith("--kernel bad kernel: "));
});

test("the fallback annotation: a bad value is named in the warning with the operator's setting; values are read trimmed and in any case", () => {
  assert.deepEqual(fallbackEnabled(true, { [FALLBACK_ANNOTATION]: "yes" }), { enabled: true, warning: `annotation ${FALLBACK_ANNOTATION}="yes" is neither "true" nor "false"; the operator's setting (on) applies` });
  assert.deepEqual(fallbackEnabled(false, { [FALLBACK_ANNOTATION]: "1" }), { enabled: false, warning: `annotation ${FALLBACK_ANNOTATION}="1" is neither "true" nor "false"; the operator's setting (off) applies` });
  assert.deepEqual(fallbackEnabled(true, { [FALLBACK_ANNOTATION]: " FALSE " }), { enabled: false });
  assert.deepEqual(fallbackEnabled(false, { [FALLBACK_ANNOTATION]: "True" }), { enabled: true });
  assert.deepEqual([PULL_FAILED_ANNOTATION, FALLBACK_REASON_ANNOTATION], ["gpuop.nvidia.com/precompiled-pull-failed", "gpuop.nvidia.com/driver-fallback"]);
});

// Surviving mutants in fallback.ts, equivalent: describeDriverPlans' `p.mode === "fallback"` / `"none"` tests -> true
// (the lists were filtered by mode already); parseKernelFlags' `eq < 0 ? v : v.slice(eq + 1)` -> `v.slice(eq + 1)` and
// `eq <= 0` (slice(0) is v; with eq 0 the empty OS tag is refused first), and its UserError test before the rethrow.
// Not yet killed (open): renderFallbackDaemonSets' OS order and pullFailed's `!== undefined` guard.
