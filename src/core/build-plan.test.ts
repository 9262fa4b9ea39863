import { spawnSync } from "node:child_process";
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { UserError } from "./errors.ts";
import { checkBuildRegistry, DEFAULT_BUILD_OS_TAG, kernelTargets, osTagOfContext, planBuild, shellQuote, type BuildInput } from "./build-plan.ts";

const base: BuildInput = {
  registry: "registry.example.com/gpu", kernel: "5.15.0-1033-aws", branch: "525", osTag: "ubuntu22.04",
  builder: "docker", push: false, context: ".",
};

test("docker: exactly the seed's build command, tagged <registry>/driver:<branch>-<kernel>-<os-tag>", () => {
  const plan = planBuild({ ...base, cudaVersion: "12.1.0" });
  assert.equal(plan.image, "registry.example.com/gpu/driver:525-5.15.0-1033-aws-ubuntu22.04");
  assert.deepEqual(plan.commands, [[
    "docker", "build",
    "--build-arg", "KERNEL_VERSION=5.15.0-1033-aws",
    "--build-arg", "CUDA_VERSION=12.1.0",
    "--build-arg", "DRIVER_BRANCH=525",
    "-t", "registry.example.com/gpu/driver:525-5.15.0-1033-aws-ubuntu22.04",
    ".",
  ]]);
});

test("--push adds the builder's push; buildah builds with 'buildah build'; podman like docker", () => {
  const b = planBuild({ ...base, builder: "buildah", push: true, context: "ctx" });
  assert.deepEqual(b.commands.map((c) => c.slice(0, 2)), [["buildah", "build"], ["buildah", "push"]]);
  assert.deepEqual(b.commands[1], ["buildah", "push", b.image]);
  assert.equal(b.commands[0]?.at(-1), "ctx");
  const p = planBuild({ ...base, builder: "podman", push: true });
  assert.deepEqual(p.commands.map((c) => c.slice(0, 2)), [["podman", "build"], ["podman", "push"]]);
});

test("a kernel module type is passed as the KERNEL_MODULE_TYPE build arg; none leaves the context's default", () => {
  const args = (kernelModuleType?: string) => planBuild({ ...base, kernelModuleType }).commands[0]?.filter((a) => a.startsWith("KERNEL_MODULE_TYPE="));
  assert.deepEqual(args("open"), ["KERNEL_MODULE_TYPE=open"]);
  assert.deepEqual(args("proprietary"), ["KERNEL_MODULE_TYPE=proprietary"]);
  assert.deepEqual(args("all"), ["KERNEL_MODULE_TYPE=all"]);
  assert.deepEqual(args(undefined), []);
  const open = planBuild({ ...base, kernelModuleType: "open" }).commands[0] ?? [];
  assert.deepEqual(open.slice(open.indexOf("KERNEL_MODULE_TYPE=open") - 1, open.indexOf("KERNEL_MODULE_TYPE=open") + 2), ["--build-arg", "KERNEL_MODULE_TYPE=open", "-t"]);
});

test("the CUDA base version defaults per OS tag", () => {
  const cuda = (osTag: string, kernel: string) => planBuild({ ...base, osTag, kernel }).commands[0]?.find((a) => a.startsWith("CUDA_VERSION="));
  assert.equal(cuda("ubuntu22.04", "5.15.0-69-generic"), "CUDA_VERSION=12.1.0");
  assert.equal(cuda("ubuntu24.04", "6.8.0-1047-oracle"), "CUDA_VERSION=12.6.3");
  assert.throws(() => planBuild({ ...base, osTag: "ubuntu26.04", kernel: "6.17.0-5-generic" }), /no default CUDA base image version for ubuntu26\.04: give --cuda-version/);
});

test("every bad input is refused with a message naming it", () => {
  const bad: [Partial<BuildInput>, RegExp][] = [
    [{ branch: "525.105.17" }, /full driver version.*use 525/],
    [{ branch: "abc" }, /"abc" is not a driver branch/],
    [{ kernel: "5.14.0-427.13.1.el9_4.x86_64" }, /not an Ubuntu kernel release/],
    [{ kernel: "6.6.1" }, /not an Ubuntu kernel release/],
    [{ kernel: "" }, /kernel release is empty/],
    [{ osTag: "Ubuntu 22.04" }, /OS tag "Ubuntu 22.04"/],
    [{ registry: "" }, /--registry is empty/],
    [{ registry: "registry.example.com/gpu:v1" }, /carries a tag or digest/],
    [{ registry: "UPPER.example.com/Gpu" }, /image reference/],
    [{ cudaVersion: "latest" }, /--cuda-version "latest" is not a CUDA version/],
    [{ builder: "kaniko" as never }, /builder "kaniko" is not one of docker, podman, buildah/],
    [{ kernelModuleType: "auto" }, /--kernel-module-type "auto" is not one of all, open, proprietary/],
  ];
  for (const [change, message] of bad) {
    assert.throws(() => planBuild({ ...base, ...change }), (e: unknown) => e instanceof UserError && message.test(e.message), JSON.stringify(change));
  }
});

test("registry references: hosts with a dot or port, with or without a path", () => {
  for (const ok of ["registry.example.com", "localhost:5000", "127.0.0.1:5000/team/gpu", "docker.io/myorg", "nvcr.io/my-org/"]) checkBuildRegistry(ok);
  for (const bad of ["myorg", "registry.example.com/gpu@sha256:abc"]) assert.throws(() => checkBuildRegistry(bad), UserError, bad);
});

test("osTagOfContext reads the OS from the context folder", () => {
  assert.equal(osTagOfContext("images/driver/ubuntu24.04/precompiled"), "ubuntu24.04");
  assert.equal(osTagOfContext("/x/ubuntu22.04/precompiled/"), "ubuntu22.04");
  assert.equal(osTagOfContext("/x/rhel9"), "rhel9");
  assert.equal(osTagOfContext("."), undefined);
});

test("kernelTargets: one target per (OS, kernel), listing its nodes", () => {
  assert.deepEqual(kernelTargets([
    { name: "b", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04" },
    { name: "c", kernel: "6.8.0-1047-oracle", osTag: "ubuntu24.04" },
    { name: "a", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04" },
  ]), [
    { kernel: "5.15.0-69-generic", osTag: "ubuntu22.04", nodes: ["a", "b"] },
    { kernel: "6.8.0-1047-oracle", osTag: "ubuntu24.04", nodes: ["c"] },
  ]);
});

test("shellQuote: what it prints, sh splits back into the same words", () => {
  assert.equal(shellQuote(["docker", "build", "-t", "r.io/driver:1", "."]), "docker build -t r.io/driver:1 .");
  const word = fc.string({ minLength: 1, unit: "binary" }).filter((w) => !w.includes("\u0000"));
  fc.assert(fc.property(fc.array(word, { minLength: 1, maxLength: 4 }), (words) => {
    const out = spawnSync("sh", ["-c", `printf '%s\\0' ${shellQuote(words)}`], { encoding: "utf8" });
    assert.deepEqual(out.stdout.split("\u0000").slice(0, -1), words);
  }), { numRuns: 60 });
});

test("CUDA versions: two or three numbers, each of any length, nothing around them", () => {
  const cuda = (cudaVersion: string) => planBuild({ ...base, cudaVersion }).commands[0]?.find((a) => a.startsWith("CUDA_VERSION="));
  for (const ok of ["12.1", "12.10", "12.1.10", "13.0.2"]) assert.equal(cuda(ok), `CUDA_VERSION=${ok}`);
  for (const bad of ["12", "12.1.0.1", "v12.1.0", "12.1.0-base", "12.", ".1.0"]) {
    assert.throws(() => cuda(bad), (e: unknown) => e instanceof UserError && e.message === `--cuda-version "${bad}" is not a CUDA version like 12.1.0 (see the base-ubuntu22.04 tags of nvidia/cuda)`, bad);
  }
});

test("Ubuntu images need an Ubuntu kernel (ABI and flavour); other OS tags take any kernel release", () => {
  for (const kernel of ["6.6.1-generic", "5.15.0-69", "6.6.1"]) {
    assert.throws(() => planBuild({ ...base, kernel }), (e: unknown) => e instanceof UserError && e.message === `kernel "${kernel}" is not an Ubuntu kernel release (like 5.15.0-69-generic or 6.8.0-1047-oracle), which a ubuntu22.04 image needs: give the node's \`uname -r\``, kernel);
  }
  const rhel = planBuild({ ...base, osTag: "rhel9.4", kernel: "5.14.0-427.13.1.el9_4.x86_64", cudaVersion: "12.4.1" });
  assert.equal(rhel.tag, "525-5.14.0-427.13.1.el9_4.x86_64-rhel9.4");
  assert.throws(() => planBuild({ ...base, osTag: "rhel9.4", kernel: "", cudaVersion: "12.4.1" }), (e: unknown) => e instanceof UserError && e.message.startsWith("kernel release is empty"), "the kernel is named as such, before any tag is formed");
});

test("checks run in order: the branch is named before the CUDA version or registry", () => {
  assert.throws(() => planBuild({ ...base, branch: "abc", cudaVersion: "latest", registry: "" }), /"abc" is not a driver branch/);
});

test("registry: trailing slashes dropped, a port is not a tag, and a bare word says what a host is", () => {
  const plan = planBuild({ ...base, registry: "registry.example.com/gpu//" });
  assert.equal(plan.image, "registry.example.com/gpu/driver:525-5.15.0-1033-aws-ubuntu22.04");
  assert.doesNotThrow(() => checkBuildRegistry("registry.example.com:5000/gpu"));
  assert.doesNotThrow(() => checkBuildRegistry("registry.example.com/gpu//"));
  assert.throws(() => checkBuildRegistry("myorg"), (e: unknown) => e instanceof UserError && e.message === '--registry "myorg" is not a registry host: give a host with a dot or port (registry.example.com, localhost:5000, docker.io/<org>), optionally with a path');
  assert.throws(() => checkBuildRegistry("registry.example.com/gpu:v1"), (e: unknown) => e instanceof UserError && e.message === '--registry "registry.example.com/gpu:v1" carries a tag or digest: give only the registry and path, like registry.example.com/gpu');
  // The colon before the last '/' belongs to the host part: not called a tag, but a bad host.
  assert.throws(() => checkBuildRegistry("host:/gpu"), (e: unknown) => e instanceof Error && !/carries a tag/.test(e.message) && /registry "host:"/.test(e.message));
  assert.equal(DEFAULT_BUILD_OS_TAG, "ubuntu22.04");
});

test("osTagOfContext: the folder itself or the one above precompiled, a whole OS tag only", () => {
  assert.equal(osTagOfContext("/x/y/ubuntu24.04/precompiled"), "ubuntu24.04");
  assert.equal(osTagOfContext("/x/ubuntu22.04//"), "ubuntu22.04");
  assert.equal(osTagOfContext("/x/my-ubuntu22.04"), undefined);
  assert.equal(osTagOfContext("/x/ubuntu22.04-old"), undefined);
  assert.equal(osTagOfContext("precompiled"), undefined);
});

test("kernelTargets: sorted by OS tag then kernel, whatever the node order", () => {
  const targets = kernelTargets([
    { name: "z", kernel: "6.8.0-1047-oracle", osTag: "ubuntu24.04" },
    { name: "y", kernel: "5.15.0-70-generic", osTag: "ubuntu22.04" },
    { name: "x", kernel: "5.15.0-69-generic", osTag: "ubuntu22.04" },
  ]);
  assert.deepEqual(targets.map((t) => `${t.osTag} ${t.kernel}`), ["ubuntu22.04 5.15.0-69-generic", "ubuntu22.04 5.15.0-70-generic", "ubuntu24.04 6.8.0-1047-oracle"]);
});

test("shellQuote: safe words as they are, others single-quoted with quotes escaped", () => {
  assert.equal(shellQuote(["a b", "x;y", "it's", "ok_@%+=:,./-1"]), `'a b' 'x;y' 'it'\\''s' ok_@%+=:,./-1`);
  assert.equal(shellQuote(["$HOME", "a\nb"]), `'$HOME' 'a\nb'`);
});

// Surviving mutants in build-plan.ts, each equivalent:
// - planBuild's `builder === "buildah" ? ["buildah", "build"] : [builder, "build"]`: both arms give the same argv.
// - planBuild's `parseImageRef(image)` removed: the registry part was parsed by checkBuildRegistry and the tag by
//   formatPrecompiledTag (a kernel is at most 64 characters), so the joined reference cannot fail where they passed.
// - osTagOfContext's `os !== undefined &&` -> true: the OS-tag pattern does not match the text "undefined".
