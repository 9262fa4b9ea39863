// `gpuop preflight` end to end: the built CLI against the real local cluster
// (a mixed Ubuntu 22.04/24.04, amd64/arm64 set of GPU nodes and the active
// ClusterPolicy with its pull secret) and a real registry with basic auth.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeClient } from "../src/kube/client.ts";
import { attachCluster, type LocalCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes, type SimulatedGpuNode } from "./harness/nodes.ts";
import { deletePolicies, ensureNamespace, installCrd } from "./harness/policy.ts";
import { freePort, localClient, pushImage, pushIndex, startRegistry, type LocalRegistry } from "./harness/registry.ts";
import { repoRoot } from "./harness/tools.ts";

const clusterName = process.env.GPUOP_TEST_CLUSTER;
const NS = "gpu-operator";
const password = "preflight-Pass-7";
const both = [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }];
const nodes: SimulatedGpuNode[] = [
  { name: "pf-jammy-amd", kernel: "5.15.0-69-generic", arch: "amd64", labels: { "preflight-test": "true" } },
  { name: "pf-jammy-arm", kernel: "5.15.0-69-generic", arch: "arm64", labels: { "preflight-test": "true" } },
  { name: "pf-noble-amd", kernel: "6.8.0-40-generic", os: { id: "ubuntu", versionId: "24.04" }, arch: "amd64", labels: { "preflight-test": "true" } },
];
let cluster: LocalCluster;
let kube: KubeClient;
let reg: LocalRegistry;

interface Row { node: string; osTag: string; arch: string; kernel: string; result: string; image: string; reason: string }
interface Run { code: number; stdout: string; stderr: string }

function gpuop(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(repoRoot, "bin/gpuop"), args, { env: { ...process.env, HOME: mkdtempSync(join(tmpdir(), "gpuop-home-")), DOCKER_CONFIG: "" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

const preflight = (...args: string[]) => gpuop(["preflight", "--kubeconfig", cluster.kubeconfig, "--plain-http", "-l", "preflight-test=true", ...args]);
const rows = (r: Run) => (JSON.parse(r.stdout) as { nodes: Row[] }).nodes.map((n) => [n.node, n.kernel, n.result, n.image.replace(`${reg.host}/`, "")]);

async function applyPolicy(repository: string, annotations: Record<string, string> = {}) {
  await cluster.kubectl(["apply", "-f", "-"], {
    input: JSON.stringify({
      apiVersion: "nvidia.com/v1", kind: "ClusterPolicy", metadata: { name: "cluster-policy", annotations },
      spec: { driver: { repository, usePrecompiled: true, version: "525", imagePullSecrets: ["pf-regcred"] } },
    }),
  });
}

before(async () => {
  assert.ok(existsSync(join(repoRoot, "dist/cli/main.js")), "build first (make build): these tests run bin/gpuop");
  if (!clusterName) return;
  cluster = attachCluster(clusterName);
  kube = cluster.client();
  await installCrd(cluster);
  await ensureNamespace(kube, NS);
  await deletePolicies(kube);
  reg = await startRegistry({ auth: "basic", users: { puller: password } });
  const c = localClient(reg, { username: "puller", password });
  try {
    await pushImage(c, "nvidia/driver", ["525-5.15.0-91-generic-ubuntu22.04", "525-6.8.0-45-generic-ubuntu24.04"], { arch: "amd64" });
    for (const tag of ["525.60.13-ubuntu22.04", "525.105.17-ubuntu22.04", "535.183.01-ubuntu24.04"]) await pushIndex(c, "nvidia/driver", tag, both);
  } finally {
    await c.close();
  }
  await cluster.kubectl(["-n", NS, "delete", "secret", "pf-regcred", "--ignore-not-found"]);
  await cluster.kubectl(["-n", NS, "create", "secret", "docker-registry", "pf-regcred", `--docker-server=${reg.host}`, "--docker-username=puller", `--docker-password=${password}`]);
  for (const n of nodes) await createGpuNode(kube, n);
  await applyPolicy(`${reg.host}/nvidia`);
});

after(async () => {
  if (!clusterName) return;
  await deletePolicies(kube).catch(() => undefined);
  await deleteNodes(kube, nodes.map((n) => n.name)).catch(() => undefined);
  await cluster.kubectl(["-n", NS, "delete", "secret", "pf-regcred", "--ignore-not-found"]).catch(() => undefined);
  await reg?.stop();
  await kube?.close();
});

const skip = clusterName ? false : "needs the local cluster: run through make test (test/run.ts)";

test("every node keeps a driver: precompiled where the registry has it for the node's arch, else the newest conventional 525 of its OS; exit 0", { skip }, async () => {
  const r = await preflight("--kernel", "ubuntu22.04=5.15.0-91-generic", "--kernel", "ubuntu24.04=6.8.0-45-generic", "-o", "json");
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(rows(r), [
    ["pf-jammy-amd", "5.15.0-91-generic", "precompiled", "nvidia/driver:525-5.15.0-91-generic-ubuntu22.04"],
    // The precompiled image exists for amd64 only: the arm64 node falls back.
    ["pf-jammy-arm", "5.15.0-91-generic", "fallback", "nvidia/driver:525.105.17-ubuntu22.04"],
    ["pf-noble-amd", "6.8.0-45-generic", "precompiled", "nvidia/driver:525-6.8.0-45-generic-ubuntu24.04"],
  ]);
});

test("a kernel with neither a precompiled nor a conventional 525 image for its OS: that node has none; exit 1; table says so", { skip }, async () => {
  const r = await preflight("--kernel", "ubuntu24.04=6.8.0-50-generic", "-o", "json");
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const noble = (JSON.parse(r.stdout) as { nodes: Row[] }).nodes.find((n) => n.node === "pf-noble-amd");
  assert.equal(noble?.result, "none");
  assert.match(noble?.reason ?? "", /^the registry has no precompiled image \S+:525-6\.8\.0-50-generic-ubuntu24\.04, and the registry has no conventional 525 image for ubuntu24\.04 either/);
  const yaml = await preflight("--kernel", "ubuntu24.04=6.8.0-50-generic", "-o", "yaml");
  assert.equal(yaml.code, 1);
  assert.match(yaml.stdout, /node: pf-noble-amd[\s\S]*?result: none/);
  const table = await preflight("--kernel", "ubuntu24.04=6.8.0-50-generic");
  assert.equal(table.code, 1);
  // 22.04 nodes were given no kernel: judged on the kernel they run (no precompiled image for it, so the fallback).
  assert.match(table.stdout, /pf-jammy-amd\s+ubuntu22\.04\s+amd64\s+5\.15\.0-69-generic \(running\)\s+fallback\s+\S+:525\.105\.17-ubuntu22\.04/);
  assert.match(table.stdout, /pf-noble-amd\s+ubuntu24\.04\s+amd64\s+6\.8\.0-50-generic\s+none\s+-/);
  assert.match(table.stdout, /0 precompiled, 2 conventional fallback, 1 without a driver/);
  const only = await preflight("--kernel", "6.8.0-45-generic", "-l", "preflight-test=true,kubernetes.io/arch=amd64", "-o", "json");
  assert.deepEqual(rows(only).map((x) => [x[0], x[2]]), [["pf-jammy-amd", "fallback"], ["pf-noble-amd", "precompiled"]], "--selector narrows the nodes; a bare --kernel applies to every OS");
});

test("with the fallback turned off on the policy, a missing precompiled image means no driver", { skip }, async () => {
  await applyPolicy(`${reg.host}/nvidia`, { "gpuop.nvidia.com/conventional-fallback": "false" });
  try {
    const r = await preflight("--kernel", "5.15.0-91-generic", "-l", "preflight-test=true,kubernetes.io/arch=arm64", "-o", "json");
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const out = JSON.parse(r.stdout) as { conventionalFallback: boolean; nodes: Row[] };
    assert.equal(out.conventionalFallback, false);
    assert.match(out.nodes[0]?.reason ?? "", /conventional fallback is turned off/);
  } finally {
    await applyPolicy(`${reg.host}/nvidia`);
  }
});

test("a registry that cannot be asked is an error (exit 2), not a result; so is a missing policy", { skip }, async () => {
  const closed = await freePort();
  await applyPolicy(`127.0.0.1:${closed}/nvidia`);
  try {
    const r = await preflight("--kernel", "5.15.0-91-generic", "--timeout", "5");
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /gpuop preflight: could not check: /);
  } finally {
    await applyPolicy(`${reg.host}/nvidia`);
  }
  const wrong = await gpuop(["preflight", "--kubeconfig", cluster.kubeconfig, "--plain-http", "--kernel", "5.15.0-91-generic", "--pull-secret", `${NS}/nosuch`]);
  assert.equal(wrong.code, 2, wrong.stdout + wrong.stderr);
  await deletePolicies(kube);
  const none = await preflight("--kernel", "5.15.0-91-generic");
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no ClusterPolicy in the cluster/);
});
