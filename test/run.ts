// `make test`: unit tests, then integration tests against one real local
// cluster (started here, stopped here even on failure or Ctrl-C), then the
// driver entrypoint's bats tests; ends with one "N passed, N failed" line.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { startCluster, stopCluster } from "./harness/cluster.ts";
import { repoRoot } from "./harness/tools.ts";

interface Counts { passed: number; failed: number; skipped: number }
const total: Counts = { passed: 0, failed: 0, skipped: 0 };
const outDir = join(repoRoot, ".tmp", "test-results");
mkdirSync(outDir, { recursive: true });

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: "inherit", env, cwd: repoRoot });
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    child.on("error", (err) => {
      console.error(`${cmd}: ${err.message}`);
      resolve(1);
    });
  });
}

function addTapCounts(file: string): void {
  if (!existsSync(file)) return;
  const text = readFileSync(file, "utf8");
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
  total.passed += num(/^# pass (\d+)/m);
  total.failed += num(/^# fail (\d+)/m) + num(/^# cancelled (\d+)/m);
  total.skipped += num(/^# skipped (\d+)/m) + num(/^# todo (\d+)/m);
}

async function nodeTests(label: string, files: string[], extra: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  if (files.length === 0) return 0;
  const tap = join(outDir, `${label}.tap`);
  console.log(`\n=== ${label} tests ===`);
  const code = await exec(process.execPath, [
    "--test", ...extra,
    "--test-reporter=spec", "--test-reporter-destination=stdout",
    "--test-reporter=tap", `--test-reporter-destination=${tap}`,
    ...files,
  ], env);
  addTapCounts(tap);
  return code;
}

function testFiles(dir: string): string[] {
  const abs = join(repoRoot, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".test.ts") && !f.includes("node_modules"))
    .map((f) => join(dir, f))
    .sort();
}

const clusterName = "gpuop-test";
let stopping: Promise<void> | undefined;
const teardown = () => (stopping ??= stopCluster(clusterName).catch((e: unknown) => console.error(`cluster teardown: ${String(e)}`)));
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    void teardown().then(() => process.exit(130));
  });
}

let failedSteps = 0;
failedSteps += (await nodeTests("unit", testFiles("src"), [])) ? 1 : 0;

const integration = testFiles("test");
if (integration.length > 0) {
  console.log("\n=== starting the local cluster (kwokctl, binary runtime) ===");
  try {
    const cluster = await startCluster(clusterName);
    const env = { ...process.env, KUBECONFIG: cluster.kubeconfig, GPUOP_TEST_CLUSTER: clusterName };
    // One file at a time: they share the cluster and its cluster-scoped objects.
    failedSteps += (await nodeTests("integration", integration, ["--test-concurrency=1", "--test-timeout=300000"], env)) ? 1 : 0;
  } catch (err) {
    console.error(`integration tests: ${(err as Error).message}`);
    total.failed += 1;
    failedSteps += 1;
  } finally {
    await teardown();
  }
}

const batsDir = join(repoRoot, "images", "driver", "test");
if (existsSync(batsDir)) {
  console.log("\n=== driver entrypoint tests (bats) ===");
  const tap = join(outDir, "bats.tap");
  const code = await exec("bash", ["-c", `set -o pipefail; bats --tap "${batsDir}" | tee "${tap}"`]);
  if (existsSync(tap)) {
    const lines = readFileSync(tap, "utf8").split("\n");
    const skipped = lines.filter((l) => /^ok .*# skip/i.test(l)).length;
    total.passed += lines.filter((l) => l.startsWith("ok ")).length - skipped;
    total.failed += lines.filter((l) => l.startsWith("not ok ")).length;
    total.skipped += skipped;
  }
  if (code !== 0) failedSteps += 1;
}

const skipped = total.skipped ? `, ${total.skipped} skipped` : "";
console.log(`\ntests: ${total.passed} passed, ${total.failed} failed${skipped}`);
process.exitCode = failedSteps > 0 || total.failed > 0 ? 1 : 0;
