// `gpuop precompiled build` with a fake builder on PATH that records its
// arguments; --missing-from-cluster against the real local cluster and a real
// local registry, which decides what is missing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { precompiledBuild, driverContextsRoot, type BuildIo } from "../src/cli/precompiled-build.ts";
import { UserError } from "../src/core/errors.ts";
import type { KubeClient } from "../src/kube/client.ts";
import { attachCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes } from "./harness/nodes.ts";
import { localClient, pushImage, startRegistry, type LocalRegistry } from "./harness/registry.ts";

const dir = mkdtempSync(join(tmpdir(), "gpuop-build-test-"));
const bin = join(dir, "bin");
const log = join(dir, "builder.log");
const originalPath = process.env.PATH;

/** A builder that records each call as one line of \x1f-separated words. */
function fakeBuilder(name: string) {
  writeFileSync(join(bin, name), `#!/bin/sh\n{ printf '%s\\037' "$(basename "$0")" "$@"; printf '\\n'; } >> "${log}"\n`);
  chmodSync(join(bin, name), 0o755);
}

function calls(): string[][] {
  if (!existsSync(log)) return [];
  return readFileSync(log, "utf8").split("\n").filter(Boolean).map((l) => l.split("\x1f").slice(0, -1));
}

function capture(): BuildIo & { stdout: () => string; stderr: () => string } {
  let out = "";
  let err = "";
  return { out: (t) => { out += t; }, err: (t) => { err += t; }, stdout: () => out, stderr: () => err };
}

before(() => {
  mkdirSync(bin, { recursive: true });
  fakeBuilder("docker");
  fakeBuilder("buildah");
  // Only the fake builders and the system's basics: no real docker or podman.
  process.env.PATH = `${bin}:/usr/bin:/bin`;
});

after(() => {
  process.env.PATH = originalPath;
  rmSync(dir, { recursive: true, force: true });
});

const ctx22 = join(driverContextsRoot, "ubuntu22.04", "precompiled");

test("builds with the seed's exact docker build arguments in gpuop's ubuntu22.04 context, then pushes", async () => {
  rmSync(log, { force: true });
  const io = capture();
  const code = await precompiledBuild([
    "--kernel", "5.15.0-1033-aws", "--branch", "525", "--registry", "registry.example.com/gpu", "--cuda-version", "12.1.0", "--push",
  ], io);
  assert.equal(code, 0, io.stderr());
  const image = "registry.example.com/gpu/driver:525-5.15.0-1033-aws-ubuntu22.04";
  assert.deepEqual(calls(), [
    ["docker", "build", "--build-arg", "KERNEL_VERSION=5.15.0-1033-aws", "--build-arg", "CUDA_VERSION=12.1.0",
      "--build-arg", "DRIVER_BRANCH=525", "-t", image, ctx22],
    ["docker", "push", image],
  ]);
  assert.match(io.stdout(), new RegExp(`^docker build .* -t ${image.replace(/\./g, "\\.")} `));
});

test("--os picks the ubuntu24.04 context and its CUDA base; --context implies the OS; buildah builds with 'build'", async () => {
  rmSync(log, { force: true });
  assert.equal(await precompiledBuild(["--kernel", "6.8.0-1047-oracle", "--branch", "580", "--registry", "localhost:5000", "--os", "ubuntu24.04", "--builder", "buildah"], capture()), 0);
  const ctx24 = join(driverContextsRoot, "ubuntu24.04", "precompiled");
  assert.deepEqual(calls()[0], ["buildah", "build", "--build-arg", "KERNEL_VERSION=6.8.0-1047-oracle", "--build-arg", "CUDA_VERSION=12.6.3",
    "--build-arg", "DRIVER_BRANCH=580", "-t", "localhost:5000/driver:580-6.8.0-1047-oracle-ubuntu24.04", ctx24]);
  rmSync(log, { force: true });
  assert.equal(await precompiledBuild(["--kernel", "6.8.0-1047-oracle", "--branch", "580", "--registry", "localhost:5000", "--context", ctx24], capture()), 0);
  assert.equal(calls()[0]?.at(-2), "localhost:5000/driver:580-6.8.0-1047-oracle-ubuntu24.04");
});

test("--dry-run prints the exact commands and runs nothing", async () => {
  rmSync(log, { force: true });
  const io = capture();
  assert.equal(await precompiledBuild(["--kernel", "5.15.0-69-generic", "--branch", "535", "--registry", "r.example.com", "--push", "--dry-run"], io), 0);
  assert.equal(io.stdout(),
    `docker build --build-arg KERNEL_VERSION=5.15.0-69-generic --build-arg CUDA_VERSION=12.1.0 --build-arg DRIVER_BRANCH=535 -t r.example.com/driver:535-5.15.0-69-generic-ubuntu22.04 ${ctx22}\n` +
    "docker push r.example.com/driver:535-5.15.0-69-generic-ubuntu22.04\n");
  assert.deepEqual(calls(), []);
});

test("--kernel-module-type reaches the build as KERNEL_MODULE_TYPE", async () => {
  rmSync(log, { force: true });
  assert.equal(await precompiledBuild(["--kernel", "6.8.0-1047-oracle", "--branch", "570", "--registry", "localhost:5000", "--os", "ubuntu24.04", "--kernel-module-type", "open"], capture()), 0);
  assert.deepEqual(calls()[0]?.slice(8, 10), ["--build-arg", "KERNEL_MODULE_TYPE=open"]);
});

test("bad input stops the command before anything runs, saying what to fix", async () => {
  rmSync(log, { force: true });
  const base = ["--kernel", "5.15.0-69-generic", "--branch", "535", "--registry", "r.example.com"];
  const with_ = (flag: string, value?: string) => {
    const i = base.indexOf(flag);
    const args = [...base];
    if (i >= 0) args.splice(i, 2);
    return value === undefined ? [...args, flag] : [...args, flag, value];
  };
  const cases: [string[], RegExp][] = [
    [with_("--kernel", "5.15.0"), /not an Ubuntu kernel release/],
    [with_("--branch", "535.183.01"), /full driver version.*use 535/],
    [with_("--os", "ubuntu20"), /no build context for ubuntu20/],
    [with_("--os", "Ubuntu"), /OS tag "Ubuntu"/],
    [with_("--registry", "r.example.com/gpu:v1"), /carries a tag or digest/],
    [with_("--builder", "podman"), /podman is not installed \(not on PATH\)/],
    [with_("--builder", "kaniko"), /--builder "kaniko" is not one of docker, podman, buildah/],
    [with_("--kernel-module-type", "closed"), /--kernel-module-type "closed" is not one of all, open, proprietary/],
    [with_("--context", dir), /has no Dockerfile/],
    [with_("--context", join(dir, "nope")), /is not a folder/],
    [with_("--os", "ubuntu24.04").concat("--context", ctx22), /--os ubuntu24.04 does not match --context/],
    [["--branch", "535", "--registry", "r.example.com"], /give the kernel with --kernel/],
    [["--kernel", "5.15.0-69-generic", "--branch", "535"], /--registry/],
  ];
  for (const [args, message] of cases) {
    await assert.rejects(precompiledBuild(args, capture()), (e: unknown) => e instanceof UserError && message.test(e.message), args.join(" "));
  }
  assert.deepEqual(calls(), []);
});

describe("--missing-from-cluster", () => {
  const selector = "gpuop-test/precompiled-build=yes";
  const nodes = [
    { name: "build-test-a", kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" } },
    { name: "build-test-b", kernel: "5.15.0-70-generic", os: { id: "ubuntu", versionId: "22.04" } },
    { name: "build-test-c", kernel: "5.15.0-70-generic", os: { id: "ubuntu", versionId: "22.04" } },
    { name: "build-test-d", kernel: "6.8.0-1046-azure-fde", os: { id: "ubuntu", versionId: "24.04" } },
    { name: "build-test-e", kernel: "5.14.0-427.13.1.el9_4.x86_64", os: { id: "rhel", versionId: "9.4" } },
  ].map((n) => ({ ...n, labels: { "gpuop-test/precompiled-build": "yes" } }));
  let registry: LocalRegistry;
  let client: KubeClient;
  let kubeconfig: string;

  before(async () => {
    const name = process.env.GPUOP_TEST_CLUSTER;
    assert.ok(name, "run through `make test` (test/run.ts), which starts the cluster");
    const cluster = attachCluster(name);
    kubeconfig = cluster.kubeconfig;
    client = cluster.client();
    for (const n of nodes) await createGpuNode(client, n);
    registry = await startRegistry();
    const rc = localClient(registry);
    await pushImage(rc, "gpu/driver", ["535-5.15.0-69-generic-ubuntu22.04"]);
    await rc.close();
  });

  after(async () => {
    await deleteNodes(client, nodes.map((n) => n.name));
    await client.close();
    await registry?.stop();
  });

  test("builds and pushes one image per kernel the registry lacks, and skips kernels it cannot build", async () => {
    rmSync(log, { force: true });
    const io = capture();
    const code = await precompiledBuild([
      "--missing-from-cluster", "--branch", "535", "--registry", `${registry.host}/gpu`, "--plain-http",
      "--kubeconfig", kubeconfig, "--selector", selector,
    ], io);
    const r = `${registry.host}/gpu/driver`;
    // [builder, verb, image, context]; push has no context.
    const ctx24 = join(driverContextsRoot, "ubuntu24.04", "precompiled");
    assert.deepEqual(calls().map((c) => (c[1] === "build" ? [c[0], c[1], c.at(-2), c.at(-1)] : c)), [
      ["docker", "build", `${r}:535-5.15.0-70-generic-ubuntu22.04`, ctx22],
      ["docker", "push", `${r}:535-5.15.0-70-generic-ubuntu22.04`],
      ["docker", "build", `${r}:535-6.8.0-1046-azure-fde-ubuntu24.04`, ctx24],
      ["docker", "push", `${r}:535-6.8.0-1046-azure-fde-ubuntu24.04`],
    ]);
    assert.match(io.stdout(), /present: .*535-5\.15\.0-69-generic-ubuntu22\.04 \(nodes build-test-a\)/);
    assert.match(io.stdout(), /missing: .*535-5\.15\.0-70-generic-ubuntu22\.04 \(nodes build-test-b, build-test-c\)/);
    assert.match(io.stderr(), /skipped 5\.14\.0-427\.13\.1\.el9_4\.x86_64 \(rhel9, nodes build-test-e\): gpuop has no build context for rhel9/);
    assert.match(io.stdout(), /2 of 4 kernels missing/);
    assert.equal(code, 1, "a kernel that could not be built makes the command fail");
  });

  test("--dry-run asks the registry but builds nothing", async () => {
    rmSync(log, { force: true });
    const io = capture();
    await precompiledBuild([
      "--missing-from-cluster", "--branch", "535", "--registry", `${registry.host}/gpu`, "--plain-http",
      "--kubeconfig", kubeconfig, "--selector", selector, "--dry-run",
    ], io);
    assert.deepEqual(calls(), []);
    assert.match(io.stdout(), /^docker push .*535-5\.15\.0-70-generic-ubuntu22\.04$/m);
    assert.match(io.stdout(), /dry run: nothing built/);
  });
});
