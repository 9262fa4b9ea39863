// The operator's security flags are checked before it connects to anything: a bad value exits 2
// with a message that says what to give instead.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "./harness/tools.ts";

function gpuop(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    // No kubeconfig anywhere: a flag error must come before any attempt to reach a cluster.
    const home = mkdtempSync(join(tmpdir(), "gpuop-home-"));
    const child = spawn(join(repoRoot, "bin/gpuop"), args, { env: { PATH: process.env.PATH ?? "", HOME: home, KUBECONFIG: join(home, "none") } });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code: code ?? 1, stderr }));
  });
}

test("bad security flags stop the operator with what to give instead", async () => {
  assert.ok(existsSync(join(repoRoot, "dist/cli/main.js")), "build first (make build): this test runs bin/gpuop");
  const notPem = join(mkdtempSync(join(tmpdir(), "gpuop-ca-")), "ca.txt");
  writeFileSync(notPem, "not a certificate\n");
  const cases: [string[], RegExp][] = [
    [["--gpu-node-label", "nvidia.com/gpu.present=true"], /GPU node label "nvidia\.com\/gpu\.present=true" is not under node-restriction\.kubernetes\.io\//],
    [["--allowed-image-repositories", "nvcr.io/nvidia,nvidia"], /allow-list entry "nvidia" is neither a registry host nor a repository with its registry/],
    [["--registry-ca-file", "/nonexistent/ca.pem"], /--registry-ca-file \/nonexistent\/ca\.pem cannot be read \(ENOENT\)/],
    [["--registry-ca-file", notPem], /has no PEM certificate/],
    [["--namespace", "../kube-system"], /namespace "\.\.\/kube-system" is not a Kubernetes namespace name/],
  ];
  for (const [args, message] of cases) {
    const r = await gpuop(["operator", ...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});
