// `gpuop precompiled list|check` end to end: the built CLI (bin/gpuop) against
// a real registry with bearer-token auth and, for `check`, the real local
// cluster's GPU nodes and a dockerconfigjson pull secret.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeClient } from "../src/kube/client.ts";
import type { Node } from "../src/kube/types.ts";
import { attachCluster } from "./harness/cluster.ts";
import { createGpuNode, deleteNodes, type SimulatedGpuNode } from "./harness/nodes.ts";
import { freePort, localClient, pushImage, pushIndex, startRegistry, type LocalRegistry } from "./harness/registry.ts";
import { repoRoot } from "./harness/tools.ts";

const password = "cli-Secret-Pass-42";
const wrongPassword = "cli-Wrong-Pass-42";
let reg: LocalRegistry;
let dockerConfig: string;
let wrongConfig: string;

interface Run { code: number; stdout: string; stderr: string }

/** Runs bin/gpuop (the build `make test` makes); HOME points at an empty dir so no user config leaks in. */
function gpuop(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(repoRoot, "bin/gpuop"), args, {
      env: { ...process.env, HOME: mkdtempSync(join(tmpdir(), "gpuop-home-")), DOCKER_CONFIG: "", ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

before(async () => {
  assert.ok(existsSync(join(repoRoot, "dist/cli/main.js")), "build first (make build): these tests run bin/gpuop");
  reg = await startRegistry({ auth: "token", users: { ci: password } });
  const c = localClient(reg, { username: "ci", password });
  try {
    await pushImage(c, "nvidia/driver", [
      "525-5.15.0-69-generic-ubuntu22.04", "525-5.15.0-101-generic-ubuntu22.04", "535-5.15.0-69-generic-ubuntu22.04",
      "550.54.15-ubuntu22.04",
    ], { arch: "amd64" });
    await pushIndex(c, "nvidia/driver", "525-6.8.0-1046-azure-fde-ubuntu24.04", [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }]);
    await pushImage(c, "nvidia/driver", ["525-5.15.0-70-generic-ubuntu22.04"], { arch: "amd64", salt: "70" });
  } finally {
    await c.close();
  }
  const dir = mkdtempSync(join(tmpdir(), "gpuop-cli-cfg-"));
  dockerConfig = join(dir, "config.json");
  wrongConfig = join(dir, "wrong.json");
  writeFileSync(dockerConfig, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`ci:${password}`).toString("base64") } } }));
  writeFileSync(wrongConfig, JSON.stringify({ auths: { [reg.host]: { username: "ci", password: wrongPassword } } }));
});

after(async () => {
  await reg?.stop();
});

describe("precompiled list", () => {
  test("summary and precompiled tags, highest branch, then OS, newest kernel first", async () => {
    const r = await gpuop(["precompiled", "list", `${reg.host}/nvidia/driver`, "--plain-http", "--docker-config", dockerConfig]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.match(lines[0]!, new RegExp(`^Name:\\s+${reg.host}/nvidia/driver$`));
    assert.match(lines[1]!, /^Latest tag:\s+535-5.15.0-69-generic-ubuntu22.04$/);
    assert.match(lines[2]!, /^Tags:\s+6 \(5 precompiled\)$/);
    const tags = lines.filter((l) => /^\d{3}\s/.test(l)).map((l) => l.split(/\s+/)[3]);
    assert.deepEqual(tags, [
      "535-5.15.0-69-generic-ubuntu22.04",
      "525-6.8.0-1046-azure-fde-ubuntu24.04",
      "525-5.15.0-101-generic-ubuntu22.04",
      "525-5.15.0-70-generic-ubuntu22.04",
      "525-5.15.0-69-generic-ubuntu22.04",
    ]);
  });

  test("filters by branch, OS, kernel and (through manifests) architecture; JSON output", async () => {
    const r = await gpuop(["precompiled", "list", `${reg.host}/nvidia/driver`, "--plain-http", "--docker-config", dockerConfig,
      "--branch", "525", "--os", "ubuntu22.04", "--kernel", "5.15.0", "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { tagCount: number; matchingTags: { tag: string }[]; requests: Record<string, number> };
    assert.equal(out.tagCount, 6);
    assert.deepEqual(out.matchingTags.map((t) => t.tag), ["525-5.15.0-101-generic-ubuntu22.04", "525-5.15.0-70-generic-ubuntu22.04", "525-5.15.0-69-generic-ubuntu22.04"]);
    assert.equal(out.requests.HEAD, undefined, "no manifest lookups without --arch");

    const arm = await gpuop(["precompiled", "list", `${reg.host}/nvidia/driver`, "--plain-http", "--docker-config", dockerConfig,
      "--branch", "525", "--arch", "arm64", "-o", "yaml"]);
    assert.equal(arm.code, 0, arm.stderr);
    assert.match(arm.stdout, /tag: 525-6.8.0-1046-azure-fde-ubuntu24.04/);
    assert.doesNotMatch(arm.stdout, /tag: 525-5.15.0/);
  });

  test("wrong credentials: exit 1, says which file to fix, never prints the password", async () => {
    const r = await gpuop(["precompiled", "list", `${reg.host}/nvidia/driver`, "--plain-http", "--docker-config", wrongConfig]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`check the credentials in docker config ${wrongConfig.replace(/[.]/g, "\\.")}`));
    assert.ok(!(r.stdout + r.stderr).includes(wrongPassword));
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  });

  test("bad input names the bad part: a tag where a repository belongs, a malformed kernel filter", async () => {
    const tagged = await gpuop(["precompiled", "list", `${reg.host}/nvidia/driver:latest`, "--plain-http"]);
    assert.equal(tagged.code, 2);
    assert.match(tagged.stderr, /give the repository without a tag or digest/);
    const kernel = await gpuop(["precompiled", "list", `${reg.host}/nvidia/driver`, "--kernel", "linux-5"]);
    assert.equal(kernel.code, 2);
    assert.match(kernel.stderr, /--kernel "linux-5" is not a kernel release/);
  });
});

describe("precompiled check by hand", () => {
  const base = () => ["precompiled", "check", "--branch", "525", "--repository", `${reg.host}/nvidia`, "--plain-http", "--docker-config", dockerConfig];

  test("an existing tag for the architecture: exit 0", async () => {
    const r = await gpuop([...base(), "--kernel", "6.8.0-1046-azure-fde", "--os", "ubuntu24.04", "--arch", "arm64"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /525-6\.8\.0-1046-azure-fde-ubuntu24\.04\s+n\/a \(custom\)\s+yes/);
  });

  test("a missing kernel or architecture: exit 1, JSON says which", async () => {
    const r = await gpuop([...base(), "--kernel", "5.15.0-70-generic", "--os", "ubuntu22.04", "--arch", "arm64", "-o", "json"]);
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout) as { allAvailable: boolean; nodes: { tag: string; available: boolean; arch: string }[] };
    assert.equal(out.allAvailable, false);
    assert.deepEqual(out.nodes.map((n) => [n.tag, n.arch, n.available]), [["525-5.15.0-70-generic-ubuntu22.04", "arm64", false]]);
  });

  test("exit codes tell 'missing' (1) from 'could not check' (2)", async () => {
    const byHand = ["--kernel", "5.15.0-70-generic", "--os", "ubuntu22.04", "--arch", "amd64"];
    const tls = await startRegistry({ tls: true });
    const closed = await freePort();
    try {
      const plainToTls = await gpuop(["precompiled", "check", "--branch", "525", "--repository", `${tls.host}/nvidia`, "--plain-http", ...byHand]);
      assert.equal(plainToTls.code, 2, plainToTls.stdout + plainToTls.stderr);
      assert.match(plainToTls.stderr, /could not check: .*serves https, not plain http: drop --plain-http/);
      const unreachable = await gpuop(["precompiled", "check", "--branch", "525", "--repository", `127.0.0.1:${closed}/nvidia`, "--plain-http", "--timeout", "5", ...byHand]);
      assert.equal(unreachable.code, 2, unreachable.stdout + unreachable.stderr);
      const wrong = await gpuop(["precompiled", "check", "--branch", "525", "--repository", `${reg.host}/nvidia`, "--plain-http", "--docker-config", wrongConfig, ...byHand]);
      assert.equal(wrong.code, 2, wrong.stdout + wrong.stderr);
      assert.ok(!(wrong.stdout + wrong.stderr).includes(wrongPassword));
      const noRepo = await gpuop([...base().map((a) => a.replace("/nvidia", "/nosuch")), ...byHand]);
      assert.equal(noRepo.code, 1, "a repository that does not exist holds no image: missing");
      const missing = await gpuop([...base(), "--kernel", "5.15.0-71-generic", "--os", "ubuntu22.04"]);
      assert.equal(missing.code, 1, missing.stdout + missing.stderr);
    } finally {
      await tls.stop();
    }
  });

  test("needs --branch, and --kernel with --os", async () => {
    const r = await gpuop(["precompiled", "check", "--kernel", "5.15.0-69-generic"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--branch/);
    const r2 = await gpuop(["precompiled", "check", "--branch", "525", "--kernel", "5.15.0-69-generic"]);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /needs both --kernel .* and --os/);
  });
});

const clusterName = process.env.GPUOP_TEST_CLUSTER;
describe("precompiled check on the cluster's GPU nodes", { skip: clusterName ? false : "needs the local cluster: run through make test (test/run.ts)" }, () => {
  const nodes: SimulatedGpuNode[] = [
    { name: "pc-gpu-a", kernel: "5.15.0-69-generic", os: { id: "ubuntu", versionId: "22.04" }, arch: "amd64" },
    { name: "pc-gpu-b", kernel: "6.8.0-1046-azure-fde", os: { id: "ubuntu", versionId: "24.04" }, arch: "arm64" },
    { name: "pc-gpu-c", kernel: "5.15.0-70-generic", os: { id: "ubuntu", versionId: "22.04" }, arch: "arm64" },
    // NFD found the GPU but has not labelled kernel and OS yet, and the OS nodeInfo reports is not one gpuop reads.
    { name: "pc-gpu-d", kernel: "5.15.0-69-generic", os: { id: "cos", versionId: "117", prettyName: "Container-Optimized OS from Google" }, withoutNfdLabels: true, labels: { "feature.node.kubernetes.io/pci-10de.present": "true" } },
  ];
  const ns = "precompiled-cli-test";
  let kube: KubeClient;
  let kubeconfig: string;

  before(async () => {
    const cluster = attachCluster(clusterName!);
    kubeconfig = cluster.kubeconfig;
    kube = cluster.client();
    for (const n of nodes) await createGpuNode(kube, n);
    await kube.create("/api/v1/namespaces", { metadata: { name: ns } });
    const dockerconfigjson = JSON.stringify({ auths: { [reg.host]: { username: "ci", password } } });
    await kube.create(`/api/v1/namespaces/${ns}/secrets`, {
      metadata: { name: "registry-creds" }, type: "kubernetes.io/dockerconfigjson",
      data: { ".dockerconfigjson": Buffer.from(dockerconfigjson).toString("base64") },
    });
  });

  after(async () => {
    await kube?.delete(`/api/v1/namespaces/${ns}`).catch(() => undefined);
    await deleteNodes(kube, nodes.map((n) => n.name)).catch(() => undefined);
    await kube?.close();
  });

  const args = () => ["precompiled", "check", "--branch", "525", "--repository", `${reg.host}/nvidia`, "--plain-http",
    "--kubeconfig", kubeconfig, "--pull-secret", `${ns}/registry-creds`];

  test("each GPU node's tag and availability for its architecture; a node without NFD labels is a problem; exit 1", async () => {
    const r = await gpuop([...args(), "-o", "json"]);
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout) as { nodes: { node: string; tag: string; arch: string; available: boolean }[]; problems: { node: string; problem: string }[] };
    const mine = out.nodes.filter((n) => n.node.startsWith("pc-gpu-")).map((n) => [n.node, n.tag, n.arch, n.available]);
    assert.deepEqual(mine, [
      ["pc-gpu-a", "525-5.15.0-69-generic-ubuntu22.04", "amd64", true],
      ["pc-gpu-b", "525-6.8.0-1046-azure-fde-ubuntu24.04", "arm64", true],
      ["pc-gpu-c", "525-5.15.0-70-generic-ubuntu22.04", "arm64", false],
    ]);
    const problem = out.problems.find((p) => p.node === "pc-gpu-d");
    assert.match(problem?.problem ?? "", /GPU node pc-gpu-d: the node's OS "Container-Optimized OS from Google" \(status\.nodeInfo\.osImage\) is not one gpuop can tell a driver image for .*: deploy Node Feature Discovery/);

    const table = await gpuop(args());
    assert.equal(table.code, 1);
    assert.match(table.stdout, /pc-gpu-c\s+5\.15\.0-70-generic\s+ubuntu22\.04\s+arm64\s+525-5\.15\.0-70-generic-ubuntu22\.04\s+n\/a \(custom\)\s+no/);
    assert.match(table.stdout, /problem: GPU node pc-gpu-d: the node's OS/);
  });

  test("once every node has an image: exit 0, so a kernel upgrade may proceed", async () => {
    await deleteNodes(kube, ["pc-gpu-d"]);
    const c = localClient(reg, { username: "ci", password });
    try {
      await pushIndex(c, "nvidia/driver", "525-5.15.0-70-generic-ubuntu22.04", [{ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "arm64" }]);
    } finally {
      await c.close();
    }
    const gpuNodes = await kube.list<Node>("/api/v1/nodes", { labelSelector: "feature.node.kubernetes.io/pci-10de.present=true" });
    assert.deepEqual(gpuNodes.items.map((n) => n.metadata.name).sort(), ["pc-gpu-a", "pc-gpu-b", "pc-gpu-c"], "another test left GPU nodes behind");
    const r = await gpuop(args());
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /3 of 3 nodes have a precompiled 525 image/);
  });

  test("a pull secret with the wrong password: exit 2 (could not check), names the secret, never the password", async () => {
    await kube.create(`/api/v1/namespaces/${ns}/secrets`, {
      metadata: { name: "wrong-creds" }, type: "kubernetes.io/dockerconfigjson",
      data: { ".dockerconfigjson": Buffer.from(JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`ci:${wrongPassword}`).toString("base64") } } })).toString("base64") },
    });
    const r = await gpuop(["precompiled", "check", "--branch", "525", "--repository", `${reg.host}/nvidia`, "--plain-http",
      "--kubeconfig", kubeconfig, "--pull-secret", `${ns}/wrong-creds`]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`check the credentials in pull secret ${ns}/wrong-creds`));
    assert.ok(!(r.stdout + r.stderr).includes(wrongPassword));
  });
});
